"""model.backbone built (docs/contract.md §7): a keras.applications model by name, or a KerasHub
image preset from a directory, as ONE nested Keras model named `backbone` that takes [0, 255] RGB
pixels and applies the family's own preprocessing inside, so model.keras, predict and export carry it.

- keras.applications: include_top is always false, the input shape is data.image's, `weights` is
  imagenet (Keras downloads it into its cache, ~/.keras/models — mlcli.model.offline says exit 4
  within seconds when that cannot happen), a local weights file, or null.
- The family's preprocessing (mlcli.model.backbone_spec): the application's own
  include_preprocessing where it has one, else Keras layers in front of it (Rescaling,
  Normalization), so nothing but Keras's own layers is stored.
- finetune.freeze/unfreeze `backbone` and `backbone/<glob>` are applied by `apply_backbone_selectors`,
  in train (phase 1: a frozen backbone) and in finetune.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from mlcli.config.load import LoadedConfig
from mlcli.errors import ConfigError, DataError, first_line
from mlcli.model.backbone_spec import BACKBONE, PREPROCESS, inner_matches, is_backbone_selector, preprocessing
from mlcli.model.offline import download_guard

_IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)  # RGB, 0-255 (the "caffe" families' means)
_CAFFE_MEAN = (123.68, 116.779, 103.939)  # RGB order; Keras subtracts them from BGR pixels
_TORCH_STD = (0.229, 0.224, 0.225)


def backbone_model(loaded: LoadedConfig, input_shape: tuple[int, ...]):
    """The configured backbone as one Keras model named `backbone`, taking (H, W, C) pixels in [0, 255]."""
    spec = loaded.config.model.backbone
    if spec.preset is not None:
        from mlcli.model.presets import image_preset_backbone  # deferred: imports KerasHub

        return image_preset_backbone(loaded, input_shape)
    return _application(loaded, input_shape)


def _application(loaded: LoadedConfig, input_shape: tuple[int, ...]):
    import keras  # deferred: imports TensorFlow

    spec = loaded.config.model.backbone
    constructor = getattr(keras.applications, spec.type, None)
    if constructor is None or not callable(constructor):
        raise ConfigError(loaded.problem(("model", "backbone", "type"),
                                         f"{spec.type!r} is not a keras.applications model"))
    weights = spec.weights
    if weights not in (None, "imagenet"):
        weights = str(_weights_file(loaded, weights))
    mode = preprocessing(spec.type)
    arguments = {"include_top": False, "weights": weights, "input_shape": tuple(input_shape),
                 "pooling": spec.pooling, **spec.arguments()}
    if mode == "builtin" and spec.type.startswith(("ConvNeXt", "EfficientNetV2", "MobileNetV3")):
        arguments["include_preprocessing"] = True
    arguments["name"] = f"{BACKBONE}_{snake_case(spec.type)}"  # the table shows it: backbone (mobile_net_v3_small)
    try:
        with download_guard(what=f"model.backbone: {spec.type} weights: imagenet"), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            application = constructor(**arguments)
    except (ValueError, TypeError) as exc:
        if weights not in (None, "imagenet"):
            raise DataError(_misfit(spec.type, weights, exc), hint=_WEIGHTS_HINT) from None
        raise ConfigError(loaded.problem(("model", "backbone"), f"{spec.type} cannot be built for inputs of shape "
                                         f"{tuple(input_shape)}: {first_line(exc)}")) from None
    skipped = [str(w.message) for w in caught if "could not be loaded" in str(w.message) or "Skipping" in str(w.message)]
    if weights not in (None, "imagenet") and skipped:
        raise DataError(f"model.backbone.weights: {weights} does not fit {spec.type}: {first_line(Exception(skipped[0]))}",
                        hint=_WEIGHTS_HINT)
    if mode == "caffe" and weights is not None:
        _bgr_to_rgb(application)
    image = keras.Input(shape=tuple(input_shape), name=f"{PREPROCESS}_input")
    return keras.Model(image, application(_preprocess(keras, mode, input_shape[-1])(image)), name=BACKBONE)


_WEIGHTS_HINT = ("give the weights file saved from the same keras.applications model with the same arguments "
                 "(e.g. keras.applications.X(include_top=False, ...).save_weights('x.weights.h5')), or weights: null")


def _weights_file(loaded: LoadedConfig, weights: str) -> Path:
    path = Path(weights).expanduser()
    if not path.is_absolute() and loaded.source is not None:
        beside = Path(loaded.source).parent / path
        path = beside if beside.exists() or not path.exists() else path
    if not path.is_file():
        raise DataError(f"model.backbone.weights: {weights}: no such file",
                        hint="weights is imagenet, null, or a local weights file (.weights.h5, .h5 or .keras)")
    return path


def _misfit(name: str, weights: str, exc: BaseException) -> str:
    """Keras's load error, said as the layer that does not fit."""
    text = str(exc)
    layer = re.search(r"name=([^,>\s]+)", text)
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", text)
    if layer and shapes:
        return (f"model.backbone.weights: {weights} does not fit {name}: layer {layer.group(1)} has shape "
                f"{shapes.group(1)} but the file holds {shapes.group(2)}")
    return f"model.backbone.weights: {weights} does not fit {name}: {first_line(exc)}"


def snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _preprocess(keras, mode: str, channels: int):
    """The family's preprocess_input as Keras layers, for pixels in [0, 255]."""
    layers = []
    if mode == "tf":
        layers.append(keras.layers.Rescaling(1 / 127.5, offset=-1.0, name=f"{PREPROCESS}_scale"))
    elif mode == "torch":
        layers.append(keras.layers.Rescaling(1 / 255.0, name=f"{PREPROCESS}_scale"))
        layers.append(keras.layers.Normalization(mean=[m / 255 for m in _IMAGENET_MEAN][:channels],
                                                 variance=[s * s for s in _TORCH_STD][:channels],
                                                 name=f"{PREPROCESS}_normalize"))
    elif mode == "caffe":
        layers.append(keras.layers.Normalization(mean=list(_CAFFE_MEAN)[:channels], variance=[1.0] * channels,
                                                 name=f"{PREPROCESS}_normalize"))
    return keras.Sequential(layers, name=PREPROCESS) if layers else keras.layers.Identity(name=PREPROCESS)  # builtin: the application's own


def _bgr_to_rgb(application) -> None:
    """The "caffe" families' weights expect BGR pixels: reversing the first convolution's input
    channels makes them take RGB (the same arithmetic as flipping every image)."""
    import keras  # deferred: imports TensorFlow

    first = next(layer for layer in application.layers if isinstance(layer, keras.layers.Conv2D))
    kernel, *rest = first.get_weights()
    first.set_weights([kernel[:, :, ::-1, :], *rest])


# ---- what finetune selectors reach -------------------------------------------------------------

def find_backbone(model):
    """The nested `backbone` model of a built model, or None."""
    for layer in _walk(model):
        if layer.name == BACKBONE:
            return layer
    return None


def _walk(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if layer.name != BACKBONE:
            yield from _walk(layer)


def inner_layers(backbone) -> list:
    """The backbone's own layers, nested models flattened, its input and preprocessing left out."""
    import keras  # deferred: imports TensorFlow

    found = []
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.InputLayer) or layer.name.startswith(PREPROCESS):
            continue
        if hasattr(layer, "layers") and layer.layers:
            found += inner_layers(layer)
        else:
            found.append(layer)
    return found


def apply_backbone_selectors(loaded: LoadedConfig, backbone, reset: bool) -> None:
    """finetune.freeze, then finetune.unfreeze, for the selectors that reach into the backbone.
    `reset`: everything trainable first (finetune: the config decides, not the flags the parent was
    saved with). A selector that matches nothing is exit 2, naming some of the layers."""
    if reset:
        backbone.trainable = True
    finetune = loaded.config.finetune
    layers = inner_layers(backbone)
    names = [layer.name for layer in layers]
    for key, trainable in (("freeze", False), ("unfreeze", True)):
        for position, selector in enumerate(getattr(finetune, key)):
            if not is_backbone_selector(selector):
                continue
            if selector == BACKBONE:
                backbone.trainable = trainable
                if trainable:
                    for layer in layers:
                        layer.trainable = True
                continue
            matched = inner_matches(names, selector)
            if not matched:
                shown = ", ".join(names[:6] + ["…"] + names[-6:]) if len(names) > 12 else ", ".join(names)
                raise ConfigError(loaded.problem(
                    ("finetune", key, position),
                    f"selector {selector!r} matches no layer inside the backbone — its {len(names)} layers are "
                    f"{shown} (mlcli train --verbose lists every one)",
                ))
            if trainable and not backbone.trainable:
                # Keras sets a container's flag on everything inside it: open it, keep the others as they were.
                states = [layer.trainable for layer in layers]
                backbone.trainable = True
                for layer, state in zip(layers, states):
                    layer.trainable = state
            for index in matched:
                layers[index].trainable = trainable
    _keep_preprocessing_frozen(backbone)


def _keep_preprocessing_frozen(backbone) -> None:
    for layer in backbone.layers:
        if layer.name.startswith(PREPROCESS):
            layer.trainable = False
