"""The finetune model: the parent loaded and checked against the data, its head replaced, layers
frozen — before compile.

Called by train.py through `model_from_parent`; train.py compiles the model this returns, so
`trainable` is final when Keras reads it (Keras's transfer-learning guide: freeze, then compile).
The layer table is shown here, before the first epoch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mlcli.checkpoint.archive import read_archive_facts
from mlcli.checkpoint.load import load_keras
from mlcli.config.load import LoadedConfig
from mlcli.data.feature_types import FeaturePlan
from mlcli.data.labels import label_encoding
from mlcli.data.sources import sha256
from mlcli.errors import ConfigError, DataError, UsageError, first_line
from mlcli.model.backbone import apply_backbone_selectors, find_backbone, inner_layers
from mlcli.model.backbone_spec import BACKBONE, is_backbone_selector
from mlcli.model.build import layer_names, user_layers
from mlcli.model.features import BODY, FEATURES, NUMERIC_NORMALIZE, body_of, input_name
from mlcli.model.finetune_config import FLAG, head_names
from mlcli.model.heads import (
    INPUT_SELECTOR,
    apply_head,
    check_output_width,
    kept_layers,
    new_head,
    no_head_problem,
    select_inputs,
    select_layers,
)
from mlcli.model.image_input import INPUT_NAME as IMAGE_INPUT
from mlcli.model.image_input import in_input_block
from mlcli.model.layers import build_layer
from mlcli.model.normalize import NORMALIZE_LAYER
from mlcli.model.table import display_rows, layer_table, parameter_counts, shape_text, show_table
from mlcli.run.files import LABELS, read_json
from mlcli.run.manifest import feature_names, read_manifest, typed_features
from mlcli.settings import active_settings


def prepare_model(loaded: LoadedConfig, prepared, parent_facts: dict, *, unsafe: bool) -> tuple[Any, dict]:
    """(uncompiled model, facts): the parent with its new head, frozen as the config says."""
    path = check_parent_file(parent_facts)
    parent = _load(path, unsafe)
    typed = body_of(parent) is not None  # the data was read with the parent's own feature types
    expected = None if typed else tuple(int(d) for d in parent.input_shape[1:])
    if not typed and expected != tuple(prepared.input_shape):
        raise DataError(
            f"data.train: {loaded.config.data.train}: {shape_text(prepared.input_shape)}, but the parent model "
            f"{path} takes {shape_text(expected)}",
            hint="fine-tune on data with the parent's feature columns (the parent's run.json lists them)",
        )
    notes = _feature_notes(parent_facts, prepared)
    model, normalize, dropped, added = _assemble(loaded, parent, expected, image=prepared.inputs is not None)
    columns = [feature.plan.name for feature in prepared.features] if typed else None
    encoders = input_encoders(model, columns) if typed else {}
    layers, inputs = _set_trainable(loaded, model, normalize, columns, encoders)
    outputs = int(model.output_shape[-1])
    encoding = label_encoding(loaded.config, prepared.task, outputs, len(prepared.classes or []))
    check_output_width(loaded, prepared, encoding, outputs, parent=f"{FLAG} {path}")
    _check_kept_classes(loaded, parent_facts, prepared, f"{FLAG} {path}")

    table = layer_table(model, verbose=active_settings().verbose)
    for row in table:
        row["origin"] = "head" if row["name"] in added else "parent"
    counts = parameter_counts(model)
    frozen = sum(row["frozen"] for row in table if not row.get("inside"))
    # the kept preprocessing's weights that are not trained (an unfrozen input:<column> embedding is)
    normalization = int(sum(np.prod(w.shape) for layer in normalize for w in layer.weights if not layer.trainable))
    totals = {
        "trainable": counts["trainable"], "frozen": frozen, "normalization": normalization,
        "other_non_trainable": counts["non_trainable"] - frozen - normalization, "total": counts["total"],
    }
    head = loaded.config.finetune.head
    backbone = find_backbone(model)
    notes = [_freeze_note(path, table), *notes,
             *_model_notes(layers, normalize, typed, None if backbone is None else inner_layers(backbone)),
             *inputs["notes"]]
    notes += _label_notes(parent_facts, prepared, replaced=bool(head and head.layers))
    random_frozen = [row["name"] for row in table if row["origin"] == "head" and not row["trainable"] and row["params"]]
    if random_frozen:  # legal, but almost always a selector counted from the end that reached the new head
        one = len(random_frozen) == 1
        notes.append(f"warning: {', '.join(random_frozen)} {'is' if one else 'are'} new (from finetune.head) and "
                     f"frozen, so {'it keeps its' if one else 'they keep their'} random initial weights — check "
                     "finetune.freeze (indices count the new head's layers too)")
    encoder_rows = _encoder_rows(encoders)
    show_table(display_rows(table, normalize, normalization, head is not None, typed, encoder_rows), totals, path)
    facts = {
        "frozen": [row["name"] for row in table if not row["trainable"] and not row.get("inside")],
        "trainable": [row["name"] for row in table if row["trainable"] and not row.get("inside")],
        "head": {"replaced": dropped, "added": added} if head else None,
        "normalization": "kept from the parent" if normalize else None,
        "input_block": _input_block_text(inputs["trainable"]) if typed else None,
        "inputs": encoder_rows if typed else None,
        "parameters": totals,
        "table": table,
        "notes": notes,
    }
    return model, facts


def _assemble(loaded: LoadedConfig, parent, input_shape: tuple, image: bool = False) -> tuple[Any, list, list[str],
                                                                                         list[str]]:
    """Input -> the parent's normalization -> its layers but the last `replace` -> the new head; for a
    typed parent, its input block -> its body with the head applied.

    Returns (model, the kept preprocessing layers with weights, names dropped, names added). The
    parent's layer objects are reused, so their weights are the parent's exactly.
    """
    import keras  # deferred: imports TensorFlow

    head = loaded.config.finetune.head
    declared = user_layers(parent)
    body = body_of(parent)
    # The parent's preprocessing: its normalization, or an image model's input block (mlcli.model.image_input)
    normalize = [layer for layer in parent.layers if layer.name == NORMALIZE_LAYER or in_input_block(layer)] \
        if body is None else [layer for layer in parent.layers if layer is not body and layer.weights]
    replace, specs = (head.replace, list(head.layers)) if head else (0, [])
    kept = kept_layers(declared, replace)
    names = head_names(loaded, [layer.name for layer in kept])
    # Under mixed precision the last layer computes in float32, as build_model does (softmax).
    mixed = keras.mixed_precision.global_policy().name != "float32"
    added = []
    for index, (spec, name) in enumerate(zip(specs, names)):
        extra = {"name": name, **({"dtype": "float32"} if mixed and index == len(specs) - 1 else {})}
        added.append(build_layer(spec, ("finetune", "head", "layers", index), loaded, extra))
    try:
        if body is not None:
            new_body = keras.Sequential(apply_head(declared, replace, added), name=BODY)
            model = keras.Model(parent.input, new_body(parent.get_layer(FEATURES).output),
                                name=loaded.config.name or parent.name)
        else:
            # An image parent's backbone is kept as it is, right after its input block.
            backbone = [layer for layer in parent.layers if layer.name == BACKBONE]
            model = keras.Sequential([keras.Input(shape=input_shape, name=IMAGE_INPUT if image else "features"),
                                      *normalize, *backbone,
                                      *apply_head(declared, replace, added)], name=loaded.config.name or parent.name)
    except (ValueError, TypeError) as exc:
        below = kept[-1].name if kept else "the input"
        raise ConfigError(loaded.problem(
            ("finetune", "head", "layers"), f"the new layers do not fit onto {below}: {first_line(exc)}",
        )) from None
    return model, normalize, [layer.name for layer in declared[len(kept):]], names


def _set_trainable(loaded: LoadedConfig, model, normalize: list, columns: list[str] | None,
                   encoders: dict[str, list]) -> tuple[list, dict]:
    """Everything trainable, then freeze, then unfreeze — the config decides, not the flags the
    parent happened to be saved with. A typed model's input block stays frozen but for the encoders
    that input:<column> selectors unfreeze. Returns the declared layers, and the input columns made
    trainable with notes about them."""
    finetune = loaded.config.finetune
    layers = user_layers(model)
    for layer in layers:
        layer.trainable = True
    for layer in normalize:
        layer.trainable = False  # statistics, never trained; a typed input block: kept as the parent's
    names = layer_names(layers)
    for index in select_layers(names, list(finetune.freeze), ("finetune", "freeze"), loaded):
        layers[index].trainable = False
    for index in select_layers(names, list(finetune.unfreeze), ("finetune", "unfreeze"), loaded):
        layers[index].trainable = True
    frozen_inputs = select_inputs(columns, list(finetune.freeze), ("finetune", "freeze"), loaded)
    unfrozen = [c for c in select_inputs(columns, list(finetune.unfreeze), ("finetune", "unfreeze"), loaded)]
    inputs: dict = {"trainable": [], "notes": []}
    for column in unfrozen:
        trained = [layer for layer in encoders[column] if _trainable_kind(layer)]
        for layer in trained:
            layer.trainable = True
        if trained:
            inputs["trainable"].append(column)
            continue
        kinds = sorted({type(layer).__name__ for layer in encoders[column]}) or ["no layer that learned anything"]
        inputs["notes"].append(
            f"{INPUT_SELECTOR}{column} has nothing to train: its encoder ({', '.join(kinds)}) holds what was fitted "
            "on the parent's training split (statistics, a vocabulary), not trained weights — only an embedding "
            "(encoding: embedding, or text with output: sequence) can be unfrozen")
    if frozen_inputs and not unfrozen:
        inputs["notes"].append(f"{', '.join(INPUT_SELECTOR + c for c in frozen_inputs)}: the typed input block is "
                               "frozen already (it is kept from the parent unless finetune.unfreeze names an input)")
    backbone = find_backbone(model)
    if backbone is not None:
        apply_backbone_selectors(loaded, backbone, reset=True)
    elif any(is_backbone_selector(s) for s in (*finetune.freeze, *finetune.unfreeze)):
        key = "freeze" if any(is_backbone_selector(s) for s in finetune.freeze) else "unfreeze"
        raise ConfigError(loaded.problem(("finetune", key), "`backbone` selectors reach into model.backbone, but "
                                         "the parent model has none — select its layers by index, name or glob"))
    if not any(layer.weights for layer in layers):  # e.g. finetune.head: {replace: 3, layers: [{type: Dropout}]}
        raise ConfigError(loaded.problem(
            ("finetune", "head"),
            f"the model's layers ({', '.join(layer.name for layer in layers)}) have no weights, so there is nothing "
            "to train — keep some of the parent's layers (a smaller replace) or add one with weights to "
            "finetune.head.layers, e.g. {type: Dense, units: N}",
        ))
    if not model.trainable_weights:
        raise ConfigError(loaded.problem(
            ("finetune", "freeze"),
            "every layer is frozen, so training would change nothing — unfreeze a layer "
            "(finetune.unfreeze) or add a new head (finetune.head)",
        ))
    return layers, inputs


def input_encoders(model, columns: list[str]) -> dict[str, list]:
    """Each input column's encoder layers that hold something learned — fitted (a vocabulary,
    statistics) or trained (an embedding) — in model order (mlcli.model.features names them
    mlcli_<input index>_<column>_..., and the numeric columns' shared mlcli_numeric_normalize;
    reshaping and one-hot layers are left out)."""
    encoders: dict[str, list] = {column: [] for column in columns}
    for layer in model.layers:
        found = re.match(r"mlcli_(\d+)_", layer.name)
        if found and int(found.group(1)) < len(columns) and type(layer).__name__ not in _STATELESS:
            encoders[columns[int(found.group(1))]].append(layer)
        elif layer.name == NUMERIC_NORMALIZE:  # one Normalization for every numeric column (rows, 1)
            numeric = {t.name for t in model.inputs if t.dtype == "float32" and t.shape[-1] == 1}
            for column in columns:
                if input_name(column) in numeric:
                    encoders[column].append(layer)
    return encoders


_STATELESS = {"Flatten", "GlobalAveragePooling1D", "CategoryEncoding"}


def _trainable_kind(layer) -> bool:
    """An encoder layer whose weights are learned by gradient descent (an Embedding), not fitted."""
    import keras  # deferred: imports TensorFlow

    return isinstance(layer, keras.layers.Embedding)


def _encoder_rows(encoders: dict[str, list]) -> list[dict]:
    """The layer table's rows for the input block: one per encoder layer with weights."""
    rows = []
    for column, layers in encoders.items():
        for layer in layers:
            trained = layer.trainable and _trainable_kind(layer)
            rows.append({"index": None, "name": f"{INPUT_SELECTOR}{column}", "layer": layer.name,
                         "type": type(layer).__name__,
                         "params": int(sum(np.prod(w.shape) for w in layer.weights)),
                         "state": "trainable (unfrozen)" if trained else
                         ("kept from the parent, frozen" if _trainable_kind(layer) else "kept from the parent")})
    return rows


def _input_block_text(trainable: list[str]) -> str:
    if not trainable:
        return "kept from the parent, frozen"
    return "kept from the parent, frozen but " + ", ".join(INPUT_SELECTOR + c for c in trainable) + " (unfrozen)"


def _freeze_note(path: Path, table: list[dict]) -> str:
    frozen = ", ".join(row["name"] for row in table if not row["trainable"] and not row.get("inside")) or "none"
    trainable = ", ".join(row["name"] for row in table if row["trainable"] and not row.get("inside"))
    return f"fine-tuned from {path}: frozen {frozen}; trainable {trainable}"


def _model_notes(layers: list, normalize: list, typed: bool, backbone_layers: list | None = ()) -> list[str]:
    """What the summary must say about normalization (docs/contract.md §1; Keras's transfer-learning guide: show what is frozen)."""
    import keras  # deferred: imports TensorFlow

    notes = []
    if typed:
        notes.append("the typed input block is kept from the parent: its vocabularies and statistics are the "
                     "parent's, not refitted on this data, and its embeddings stay frozen unless finetune.unfreeze "
                     "names their column (input:<column>)")
    elif any(in_input_block(layer) for layer in normalize):
        notes.append("the image input block is kept from the parent: images are decoded and resized as this run's "
                     "data.image says, then scaled to [0, 1] inside the model as the parent was")
    elif normalize:
        notes.append("normalization kept from the parent: mlcli_normalize holds the statistics fitted on the "
                     "parent's training data and is not refitted on this data")
    elif backbone_layers:
        notes.append("the backbone's own input preprocessing is inside it, kept from the parent")
    else:
        notes.append("the parent model has no mlcli normalization layer, so this data is fed to it as is "
                     "(normalization lives inside the model; data.normalize does not add one to a parent)")
    batch_norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    inside = [layer for layer in backbone_layers or [] if isinstance(layer, keras.layers.BatchNormalization)]
    frozen_inside = [layer for layer in inside if not layer.trainable]
    if frozen_inside:
        notes.append(f"{len(frozen_inside)} of the backbone's {len(inside)} BatchNormalization layers are frozen and "
                     "run in inference mode (their moving mean and variance do not change)")
    frozen = [layer.name for layer in batch_norms if not layer.trainable]
    trained = [layer.name for layer in batch_norms if layer.trainable]
    if frozen:
        notes.append(f"frozen BatchNormalization ({', '.join(frozen)}) runs in inference mode: it keeps the "
                     "parent's moving mean and variance and does not update them (Keras's rule for trainable=False)")
    if trained:
        notes.append(f"trainable BatchNormalization ({', '.join(trained)}) updates its moving mean and "
                     "variance on this data")
    return notes


def check_parent_file(parent_facts: dict) -> Path:
    """The parent file still exists and is the one the run started from (it matters on --resume)."""
    path = Path(parent_facts["path"])
    if not path.is_file():
        raise UsageError(f"the parent checkpoint {path} is gone",
                         hint="restore it, or start a new finetune run from another checkpoint")
    if parent_facts.get("sha256") and sha256(path) != parent_facts["sha256"]:
        raise UsageError(f"the parent checkpoint {path} has changed since this run started (its sha256 differs)",
                         hint="start a new finetune run from it rather than continuing this one")
    return path


def _load(path: Path, unsafe: bool):
    import keras  # deferred: imports TensorFlow

    model = load_keras(path, compile=False, unsafe=unsafe, what=FLAG)
    if not isinstance(model, keras.Sequential) and body_of(model) is None:
        raise UsageError(f"{FLAG} {path}: holds a {type(model).__name__} — mlcli fine-tunes Sequential models")
    return model


def _feature_notes(parent_facts: dict, prepared) -> list[str]:
    """The same columns in another order would be silently wrong: refuse; renamed ones: say so."""
    before = _parent_features(parent_facts)
    after = list(prepared.feature_names)
    if not before or before == after or len(before) != len(after):
        return []
    if sorted(before) == sorted(after):
        position = next(i for i, (a, b) in enumerate(zip(before, after)) if a != b)
        raise DataError(
            f"data.train: feature column {position + 1} is {after[position]!r} here but {before[position]!r} in the "
            "parent's training data — the model reads columns by position",
            hint="set data.features to the parent's columns in its order (its run.json lists them under features)",
        )
    return [f"the feature columns are named differently from the parent's ({after[0]!r}… vs {before[0]!r}…); "
            "they are fed to it by position"]


def _check_kept_classes(loaded: LoadedConfig, parent_facts: dict, prepared, parent: str) -> None:
    """Keeping the parent's output layer (no finetune.head) keeps what its outputs stand for: the data's
    classes must be the parent's (data lacking some of them was given the parent's vocabulary when it
    was read). Other classes would silently take over outputs trained for different ones."""
    if loaded.config.finetune.head is not None or prepared.classes is None:
        return
    before = parent_classes(parent_facts)
    if before is None or before == prepared.classes:
        return
    known = {(type(c), c) for c in before}  # 1 and 1.0 are different labels
    others = [c for c in prepared.classes if (type(c), c) not in known]
    raise ConfigError(no_head_problem(
        loaded,
        f"the parent's output layer is kept (no finetune.head), and its {len(before)} outputs stand for classes "
        f"{_listing(before)}; this data's labels include {_listing(others)}, which none of them stands for — a new "
        f"head is needed: {new_head(len(prepared.classes))}",
        parent,
    ))


def _listing(classes: list) -> str:
    return ", ".join(map(repr, classes[:12])) + (", …" if len(classes) > 12 else "")


def _label_notes(parent_facts: dict, prepared, replaced: bool) -> list[str]:
    before = _parent_labels(parent_facts)
    if replaced or prepared.classes is None or before is None or before == prepared.classes:
        return []
    return [f"the parent's output layer is kept: its outputs, trained for classes {before}, now stand for "
            f"{prepared.classes} (this run's labels.json)"]


def parent_classes(parent_facts: dict) -> list | None:
    """The parent's class vocabulary in output order: its run's labels.json, else the mlcli.json inside
    the .keras file; None for a regression parent or a model saved by Keras alone."""
    classes = _parent_labels(parent_facts)
    if isinstance(classes, list):
        return classes
    facts = read_archive_facts(Path(parent_facts["path"]))
    return facts["classes"] if facts else None


def _parent_features(parent_facts: dict) -> list | None:
    """The feature columns the parent's run recorded in its run.json; None without a run."""
    if not parent_facts.get("run_dir"):
        return None
    return feature_names(read_manifest(Path(parent_facts["run_dir"])).get("features"))


def parent_feature_types(parent_facts: dict) -> dict:
    """How new data is read for the parent (mlcli.data.load.prepare_data's `plans` or `typed`): a typed
    parent's feature plans (its run's run.json, else the mlcli.json inside the file), or the plain
    float path for a plain parent."""
    if parent_facts.get("run_dir"):
        records = typed_features(read_manifest(Path(parent_facts["run_dir"])).get("features"))
    else:
        facts = read_archive_facts(Path(parent_facts["path"]))
        records = typed_features(facts["features"]) if facts else None
    if records is None:
        return {"typed": False}
    return {"plans": [FeaturePlan.from_record(r) for r in records]}


def _parent_labels(parent_facts: dict):
    """The parent run's labels.json; None without a run, or when it is missing or unreadable."""
    if not parent_facts.get("run_dir"):
        return None
    try:
        return read_json(Path(parent_facts["run_dir"]) / LABELS)
    except (OSError, ValueError):
        return None


def model_from_parent(parent_facts: dict, *, unsafe: bool) -> Callable[[LoadedConfig, Any], tuple[Any, dict]]:
    """train.py's make_model for a finetune run: (uncompiled model, facts for run.json). `unsafe`
    (--unsafe) lets Keras run Python code stored in the parent's file."""

    def make_model(loaded: LoadedConfig, prepared) -> tuple[Any, dict]:
        return prepare_model(loaded, prepared, parent_facts, unsafe=unsafe)

    return make_model
