"""`mlcli validate`: a config checked without training, every problem at once."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from mlcli import console
from mlcli.cli.options import json_option, set_option
from mlcli.errors import ConfigError, MlcliError
from mlcli.settings import Settings, use_settings


def validate(
    config: Path = typer.Argument(..., metavar="CONFIG", help="The YAML config to check.", show_default=False),
    set_: Optional[List[str]] = set_option(),
    print_: bool = typer.Option(
        False, "--print", help="Write the resolved config to stdout as YAML (with --json: as `resolved` in it)."
    ),
    deep: bool = typer.Option(
        False, "--deep", help="Also resolve every Keras name and build the model on the data's shape (imports TensorFlow)."
    ),
    json_: bool = json_option(help='One JSON document on stdout: {"valid", "problems": [{"key", "file", "line", '
                                   '"message"}]}; human output on stderr.'),
) -> None:
    """Check a config without training: every problem at once, with file and line."""
    # deferred: config imports pydantic and yaml, too slow for `mlcli --help`
    from mlcli.config import check_config, load_config, to_dict
    from mlcli.config.yamlio import dump_yaml

    use_settings(Settings(json=json_))
    try:
        loaded = load_config(config, set_ or [])
        if loaded.config.tune is not None:  # a sweep's config: its space is tried on the config too
            from mlcli.tune.space import check_tune  # deferred: only a config with a tune: section needs it

            check_tune(loaded)
        else:
            check_config(loaded)
        summary = None
        if deep:
            # deferred: builds the model, which imports TensorFlow
            from mlcli.training.validate_deep import validate_deep

            summary = validate_deep(loaded)
    except MlcliError as exc:
        if json_:
            error = exc.error_document()
            error.pop("problems", None)  # given below in the shape validate documents (file, not source)
            console.data_json({"valid": False, "problems": _problems(exc), **error})
        raise
    if summary:
        console.info(summary)
    if json_:
        document = {"valid": True, "problems": [], "config": str(config)}
        console.data_json({**document, "resolved": to_dict(loaded.config)} if print_ else document)
    elif print_:
        console.data_text(dump_yaml(to_dict(loaded.config)))
    c = loaded.config
    layers = f"{len(c.model.layers)} layer(s)"
    if not any(path[:1] == ("model",) for path in loaded.positions):  # e.g. a config for mlcli finetune
        layers = f"no model section (train would use the default {layers}; finetune takes the parent's)"
    # Every Keras name and argument is checked above; what only the data can tell is said, not implied.
    unchecked = "" if deep else ("; checked with the data by --deep: data files and columns, input shape, layer shapes, "
                                 "output width")
    console.info(
        f"{config}: valid — {layers}, loss {c.loss if isinstance(c.loss, str) else c.loss.type}, "
        f"{c.training.epochs} epoch(s), data {c.data.train}{unchecked}"
    )


def _problems(exc: MlcliError) -> list[dict]:
    """Each problem as {"key", "file", "line", "message"}; an error that is not about the config's text
    (a data file that --deep cannot read) is one problem without a key."""
    if isinstance(exc, ConfigError):
        return [{"key": p.path, "file": p.source, "line": p.line, "message": p.message} for p in exc.problems]
    return [{"key": "", "file": None, "line": None, "message": exc.message}]
