"""`mlcli finetune`'s config (no TensorFlow): the parent run's resolved config with CONFIG and --set
laid over it, a `model:` section refused (the architecture comes from --from), and the freeze
selectors checked against the layer names stored in the checkpoint, so a selector that matches
nothing fails in well under a second.

The model itself is prepared by mlcli.model.finetune_model; compile, fit and save are
mlcli.training.train's, shared with `mlcli train`.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from mlcli.checkpoint import archive
from mlcli.checkpoint.checkpoint import Checkpoint, open_checkpoint
from mlcli.config.checks import snake_case
from mlcli.config.load import LoadedConfig, default_dict, load_config, read_config_tree
from mlcli.config.yamlio import read_yaml_file
from mlcli.errors import ConfigError, ConfigProblem, UsageError
from mlcli.model.heads import apply_head, kept_layers, select_inputs, select_layers
from mlcli.model.normalize import NORMALIZE_LAYER

FLAG = "--from"


def load_finetune_config(config: Path | None, parent: Path, overrides: list[str]) -> tuple[LoadedConfig, dict]:
    """The resolved config of a finetune run, and the facts run.json records about the parent."""
    raw = _refuse_model_section(config, overrides)
    checkpoint = open_parent(parent)
    base, base_source = _parent_config(checkpoint, config)
    if checkpoint.config_path is None and "data" not in raw and not _sets_key(overrides, "data"):
        raise ConfigError(ConfigProblem(
            "data", f"{checkpoint.model_path} has no run's config.yaml beside it, so the data section must come from "
            "CONFIG — add e.g. `data: {train: new.csv}`, or --set data.train=new.csv",
            str(config) if config is not None else f"{FLAG} {parent}",
        ))
    loaded = load_config(config, overrides, base=base, base_source=base_source)
    check_selectors(loaded, checkpoint.layers, checkpoint.typed)
    return loaded, checkpoint.facts()


def open_parent(path: Path) -> Checkpoint:
    """--from CKPT, which must hold a Sequential model (what `mlcli train` writes)."""
    checkpoint = open_checkpoint(path, FLAG)
    if not checkpoint.is_sequential and checkpoint.typed is None:
        raise UsageError(
            f"{FLAG} {checkpoint.model_path}: holds a {checkpoint.architecture.get('class_name')} model — mlcli "
            "fine-tunes Sequential models (what `mlcli train` writes), whose layers can be counted, frozen and "
            "replaced in order",
        )
    return checkpoint


def _set_key(assignment: str) -> str:
    return assignment.partition("=")[0].strip()


def _sets_key(overrides: list[str], section: str) -> bool:
    return any(_set_key(s) == section or _set_key(s).startswith(section + ".") for s in overrides)


def _refuse_model_section(config: Path | None, overrides: list[str]) -> dict:
    """CONFIG as written (with its extends); a model section there or in --set is exit 2."""
    why = (f"mlcli finetune takes the architecture and weights from {FLAG} — remove the model section; "
           "to change the last layers use finetune.head: {replace: N, layers: [...]}")
    raw: dict = {}
    if config is not None:
        if config.is_dir():
            raise UsageError(f"{config} is a directory, not a config",
                             hint=f"to continue a finetune run: mlcli finetune --resume {config}")
        raw, positions = read_config_tree(config)
        if "model" in raw:
            source, line = positions.get(("model",), (str(config), None))
            raise ConfigError(ConfigProblem("model", why, source, line))
    for assignment in overrides:
        key = _set_key(assignment)
        if key == "model" or key.startswith("model."):
            raise ConfigError(ConfigProblem(key, why, f"--set {assignment}"))
    return raw


def _parent_config(checkpoint: Checkpoint, config: Path | None) -> tuple[dict, str]:
    """The parent's resolved config as the base every section not given by CONFIG comes from.

    model.layers describes the parent model as it is. A train run ignores its finetune section, so
    that section is taken as it stands. A finetune parent's checkpoint already holds its head: its
    model.layers are shown with that head applied, and its finetune.head is dropped (applying it
    again would replace a trained head with a fresh one); its freeze and unfreeze selectors are
    kept, like any other setting not given.
    """
    declared = checkpoint.layers
    if checkpoint.config_path is not None:
        data, _ = read_yaml_file(checkpoint.config_path)
        if not isinstance(data, dict):
            raise ConfigError(ConfigProblem("", "the parent's config.yaml is not a mapping of sections",
                                            str(checkpoint.config_path), 1))
        base = copy.deepcopy(data)
        layers = _layers(base, with_head=checkpoint.from_finetune)
        if layers is None or len(layers) != len(declared):
            # e.g. a .keras file copied into a run of another architecture: the checkpoint is the truth.
            layers = archive.describe_layers(declared)
        source = str(checkpoint.config_path)
        parent_name = base.get("name") or (checkpoint.run_dir.name if checkpoint.run_dir else checkpoint.model_path.stem)
    else:
        base = default_dict()
        layers = archive.describe_layers(declared)
        source = f"{checkpoint.model_path} (no config.yaml beside it: the layers are read from the checkpoint)"
        parent_name = checkpoint.model_path.stem
    backbone = (base.get("model") or {}).get("backbone") if checkpoint.config_path is not None else None
    base["model"] = {"layers": layers, **({"backbone": backbone} if backbone else {})}
    if checkpoint.from_finetune:
        base["finetune"] = {**(base.get("finetune") or {}), "head": None}
    base.pop("extends", None)
    base.pop("name", None)  # the run is named after CONFIG (name: or its file's stem) ...
    if config is None:
        # ... or, with no CONFIG, after its parent.
        base["name"] = (re.sub(r"[^A-Za-z0-9._-]+", "-", str(parent_name)).strip("-._") or "run") + "-finetune"
    return base, source


def _layers(config: dict, with_head: bool) -> list | None:
    model = config.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("layers"), list):
        return None
    layers = list(model["layers"])
    head = (config.get("finetune") or {}).get("head") if with_head else None
    if isinstance(head, dict):
        layers = apply_head(layers, int(head.get("replace") or 0), head.get("layers") or [])
    return layers


def head_names(loaded: LoadedConfig, kept: list[str]) -> list[str]:
    """Names of the new head layers: the config's `name`, or head_<type> made unique.

    Keras would otherwise name a new Dense "dense", which the parent's first Dense already is, and
    a Sequential refuses two layers of one name. The prefix also lets a glob select the new head.
    """
    head = loaded.config.finetune.head
    taken = {NORMALIZE_LAYER, *kept}
    names = []
    for index, spec in enumerate(head.layers if head else []):
        name = spec.arguments().get("name")
        if name is not None:
            if not isinstance(name, str) or not name or name in taken:
                raise ConfigError(loaded.problem(
                    ("finetune", "head", "layers", index, "name"),
                    f"{name!r} cannot name a new layer: the model already has {', '.join(sorted(taken))} — "
                    "choose another name, or leave it out",
                ))
        else:
            stem = name = f"head_{snake_case(spec.type)}"
            suffix = 1
            while name in taken:
                name = f"{stem}_{suffix}"
                suffix += 1
        taken.add(name)
        names.append(name)
    return names


def check_selectors(loaded: LoadedConfig, declared: list[archive.ArchiveLayer], typed: list[dict] | None = None) -> None:
    """freeze/unfreeze against the layers the new model will have, from the checkpoint's own record;
    input:<column> against its typed features (`typed`: their records, None for a plain model)."""
    columns = [record["name"] for record in typed] if typed is not None else None
    for key in ("freeze", "unfreeze"):
        select_inputs(columns, list(getattr(loaded.config.finetune, key)), ("finetune", key), loaded)
    head = loaded.config.finetune.head
    if head is not None and head.replace > len(declared):
        return  # check_config says so, with the numbers
    replace, specs = (head.replace, head.layers) if head else (0, [])
    names = head_names(loaded, [layer.name for layer in kept_layers(declared, replace)])
    layers = apply_head([(layer.name, layer.type) for layer in declared], replace,
                        [(name, spec.type) for name, spec in zip(names, specs)])
    if not layers:
        raise ConfigError(loaded.problem(
            ("finetune", "head"),
            f"replace: {replace} drops all {len(declared)} of the parent's layers and layers: [] adds none, so "
            "nothing is left to train — keep some (a smaller replace) or add new ones (finetune.head.layers)",
        ))
    select_layers(layers, list(loaded.config.finetune.freeze), ("finetune", "freeze"), loaded)
    select_layers(layers, list(loaded.config.finetune.unfreeze), ("finetune", "unfreeze"), loaded)
