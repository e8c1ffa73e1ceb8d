"""KerasHub presets as model.backbone (docs/contract.md §7): `preset: DIR` (a local directory written by
KerasHub's save_to_preset) or a preset name (KerasHub downloads it; offline that is exit 4 within
seconds). An image preset is its backbone with its ImageConverter in front (resizing and scaling
inside model.keras), then data.image pixels in [0, 255] go straight in; `pooling` makes one vector
per image. KerasHub classes are registered Keras objects: model.keras loads with keras_hub imported
(mlcli.checkpoint.load imports it when the archive names them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlcli.config.keras_rules import did_you_mean
from mlcli.config.load import LoadedConfig
from mlcli.errors import ConfigError, DataError, first_line
from mlcli.model.backbone_spec import BACKBONE
from mlcli.model.offline import OfflineError, reachable

_WHERE = ("model", "backbone", "preset")
_HINT = ("a preset directory is what KerasHub's save_to_preset writes: config.json, model.weights.h5, metadata.json "
         "and the preprocessing's own file (image_converter.json, tokenizer.json)")


def preset_source(loaded: LoadedConfig) -> str:
    """The preset to load: a directory (checked, relative to the config file) or a KerasHub preset name
    (checked against KerasHub's list, then that the download can happen)."""
    preset = loaded.config.model.backbone.preset
    path = Path(preset).expanduser()
    if not path.is_absolute() and loaded.source is not None and not path.exists():
        path = Path(loaded.source).parent / path
    looks_like_path = os.sep in preset or preset.startswith(".") or path.exists()
    if looks_like_path:
        if not path.is_dir():
            raise DataError(f"model.backbone.preset: {preset}: no such directory", hint=_HINT)
        config = path / "config.json"
        try:
            json.loads(config.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"model.backbone.preset: {config}: not a readable KerasHub preset config "
                            f"({first_line(exc)})", hint=_HINT) from None
        return str(path)
    return _named(loaded, preset)


def _named(loaded: LoadedConfig, name: str) -> str:
    import keras_hub  # deferred: imports TensorFlow and KerasHub

    presets = keras_hub.models.Backbone.presets
    if name not in presets:
        raise ConfigError(loaded.problem(_WHERE, f"{name!r} is neither a directory nor a KerasHub preset name"
                                                 + did_you_mean(name, sorted(presets))))
    handle = presets[name].get("kaggle_handle") or ""
    url = handle.replace("kaggle://", "https://www.kaggle.com/models/") if handle.startswith("kaggle://") else handle
    if not _cached(handle):
        ok, address = reachable(url or "https://www.kaggle.com")
        if not ok:
            raise OfflineError(f"model.backbone.preset: {name}: {url} cannot be downloaded — no connection to "
                               f"{address} (offline?)",
                               hint="on a connected machine, save it as a directory (keras_hub.models.Backbone."
                                    f"from_preset({name!r}).save_to_preset(DIR), the same for its preprocessor) "
                                    "and give preset: DIR")
    return name


def _cached(handle: str) -> bool:
    """Whether kagglehub already holds this preset (its cache: KAGGLEHUB_CACHE or ~/.cache/kagglehub)."""
    if not handle.startswith("kaggle://"):
        return False
    parts = handle[len("kaggle://"):].split("/")
    root = Path(os.environ.get("KAGGLEHUB_CACHE") or Path.home() / ".cache" / "kagglehub")
    return (root / "models" / Path(*parts)).is_dir()


def _load(what, source: str, kind: str):
    try:
        return what.from_preset(source)
    except Exception as exc:  # noqa: BLE001 — a damaged preset fails in any of KerasHub's ways
        raise DataError(f"model.backbone.preset: {source}: its {kind} cannot be loaded: {first_line(exc)}",
                        hint=_HINT) from None


def image_preset_backbone(loaded: LoadedConfig, input_shape: tuple[int, ...]):
    """Input (H, W, C) in [0, 255] -> the preset's ImageConverter -> its backbone -> pooling, as one
    model named `backbone`."""
    import keras  # deferred: imports TensorFlow
    import keras_hub  # deferred: imports KerasHub

    source = preset_source(loaded)
    hub = _load(keras_hub.models.Backbone, source, "backbone")
    if isinstance(hub.input, dict):  # token ids, segment ids, padding mask: a text backbone
        raise ConfigError(loaded.problem(_WHERE, f"{source} holds a {type(hub).__name__}, which does not take images "
                                                 "— a text preset reads a text column: data.features with "
                                                 "{name: COLUMN, type: text} instead of data.image"))
    if not (Path(source) / "image_converter.json").is_file() and Path(source).is_dir():
        raise DataError(f"model.backbone.preset: {Path(source) / 'image_converter.json'}: missing — an image preset "
                        "needs its ImageConverter (how its pixels are resized and scaled)", hint=_HINT)
    converter = _load(keras_hub.layers.ImageConverter, source, "image converter")
    pooling = loaded.config.model.backbone.pooling
    image = keras.Input(shape=tuple(input_shape), name=f"{BACKBONE}_input")
    features = hub(converter(image))
    if pooling == "avg":
        features = keras.layers.GlobalAveragePooling2D(name=f"{BACKBONE}_pool")(features)
    elif pooling == "max":
        features = keras.layers.GlobalMaxPooling2D(name=f"{BACKBONE}_pool")(features)
    return keras.Model(image, features, name=BACKBONE)


def text_preset_encoder(loaded: LoadedConfig):
    """For a text column: (its input (rows, 1) strings, a name prefix) -> the preset's preprocessor
    (tokenizer and packer, sequence_length) -> its backbone, named `backbone` -> one vector per row
    (the pooled output, or the first token's when the backbone has none)."""
    import keras  # deferred: imports TensorFlow
    import keras_hub  # deferred: imports KerasHub

    spec = loaded.config.model.backbone
    source = preset_source(loaded)
    hub = _load(keras_hub.models.Backbone, source, "backbone")
    if not isinstance(hub.input, dict):
        raise ConfigError(loaded.problem(_WHERE, f"{source} holds a {type(hub).__name__}, an image backbone — "
                                                 "an image preset reads images: set data.image"))
    arguments = {"sequence_length": spec.sequence_length} if spec.sequence_length else {}
    try:
        preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(source, **arguments)
    except Exception as exc:  # noqa: BLE001 — a damaged preset fails in any of KerasHub's ways
        raise DataError(f"model.backbone.preset: {source}: its tokenizer and preprocessor cannot be loaded: "
                        f"{first_line(exc)}", hint=_HINT) from None
    hub.name = BACKBONE

    def encode(value, prefix: str) -> list:
        packed = preprocessor(keras.ops.squeeze(value, axis=-1))
        outputs = hub(packed)
        if isinstance(outputs, dict) and "pooled_output" in outputs:
            return [outputs["pooled_output"]]
        sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
        return [sequence[:, 0, :]]

    return encode
