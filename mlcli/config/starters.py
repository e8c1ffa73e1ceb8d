"""`mlcli init`: the starter configs shipped in mlcli/templates, written as they are.

Each starter trains as written on a bundled data set (builtin:digits, builtin:diabetes); the
finetune starter fine-tunes from a run the user names with --from. No TensorFlow here.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from mlcli.errors import UsageError
from mlcli.run import files

TEMPLATES = ("classification", "regression", "finetune")


def template_text(name: str) -> str:
    if name not in TEMPLATES:
        raise UsageError(f"--template {name}: unknown template — expected one of {', '.join(TEMPLATES)}")
    return resources.files("mlcli.templates").joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def write_starter(directory: Path, name: str, force: bool) -> Path:
    """DIR/<template>.yaml, and nothing else; an existing file is kept unless `force`."""
    text = template_text(name)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: is a file — expected a directory to write {name}.yaml into")
    target = directory / f"{name}.yaml"
    if target.is_dir():
        raise UsageError(f"{target}: is a directory — choose another DIR")
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", hint="pass --force to overwrite it, or choose another DIR")
    try:
        files.write_text(target, text)
    except OSError as exc:
        raise UsageError(f"{target}: cannot be written ({exc.strerror or exc})") from None
    return target


def next_steps(path: Path, name: str) -> list[str]:
    """The commands to run next, as the starter's own first comment lines give them, with the
    starter file names placed in the directory they were (or will be) written to."""
    names = re.compile(r"\b(" + "|".join(TEMPLATES) + r")\.yaml\b")
    lines = []
    for line in template_text(name).splitlines():
        if not line.startswith("# ") or "mlcli " not in line:
            break
        lines.append(names.sub(lambda m: str(path.parent / m.group(0)), line[2:]))
    return lines
