"""The model from the config, assembled stage by stage: input -> normalization -> the layers of
model.layers; for images, the image input block (mlcli.model.image_input) -> model.backbone
(mlcli.model.backbone) -> the layers; or, for typed features, their input block (mlcli.model.features) -> model.layers as
its body. Each stage is one function returning its layers; a new stage is one more call in
`build_model`."""

from __future__ import annotations

from typing import Any

from mlcli.config.load import LoadedConfig
from mlcli.data.label_scale import LabelTransform
from mlcli.errors import ConfigError, first_line
from mlcli.model.backbone import apply_backbone_selectors, backbone_model, find_backbone
from mlcli.model.backbone_spec import BACKBONE, is_backbone_selector
from mlcli.model.features import body_of, typed_model
from mlcli.model.image_input import image_input_layers, in_input_block
from mlcli.model.label_transform import LAYERS as LABEL_LAYERS
from mlcli.model.label_transform import undo_layers
from mlcli.model.layers import build_layer
from mlcli.model.normalize import NORMALIZE_LAYER, normalization_layer


def build_model(loaded: LoadedConfig, input_shape: tuple[int, ...], train_x,
                output_float32: bool = False, feature_names: list[str] | None = None, features: list | None = None,
                label_transform: LabelTransform | None = None):
    """Input -> (Normalization) -> the configured layers. The last layer computes in float32 under
    mixed precision (Keras's advice for softmax).

    `features`: typed features fitted on the training split (mlcli.data.fit_features): the model is
    then their input block (mlcli.model.features) with the configured layers as its body.

    `label_transform`: data.label_transform's statistics; layers after the body undo it
    (mlcli.model.label_transform), so the model outputs the target's own units."""
    import keras  # deferred: imports TensorFlow

    config = loaded.config
    _check_backbone_selectors(loaded)
    tail = undo_layers(label_transform) if label_transform is not None else []
    if features is not None:
        try:
            model = typed_model(features, _body(loaded, output_float32), config.name or "mlcli_model", tail,
                                text_encoder=_text_preset(loaded))
        except (ValueError, TypeError) as exc:
            raise ConfigError(loaded.problem(("model", "layers"),
                                             f"the layers do not fit together: {first_line(exc)}")) from None
        _check_one_vector_per_row(loaded, model, input_shape)
        backbone = find_backbone(model)
        if backbone is not None:
            apply_backbone_selectors(loaded, backbone, reset=False)
        return model
    if config.data.image is not None:
        layers: list[Any] = image_input_layers(loaded, input_shape, rescale=config.model.backbone is None)
        layers += _backbone(loaded, input_shape)
    else:
        layers = [keras.Input(shape=input_shape, name="features")]
        layers += _normalization(loaded, train_x, feature_names)
    layers += _body(loaded, output_float32) + tail
    try:
        model = keras.Sequential(layers, name=config.name or "mlcli_model")
    except (ValueError, TypeError) as exc:
        raise ConfigError(loaded.problem(("model", "layers"), f"the layers do not fit together: {first_line(exc)}")) from None
    _check_one_vector_per_row(loaded, model, input_shape)
    return model


def _check_backbone_selectors(loaded: LoadedConfig) -> None:
    """`backbone` selectors in a config that trains a model without model.backbone: exit 2 at the first.
    (validate cannot tell: a finetune config's model is its parent's; finetune checks against the parent.)"""
    if loaded.config.model.backbone is not None:
        return
    finetune = loaded.config.finetune
    for key in ("freeze", "unfreeze"):
        for position, selector in enumerate(getattr(finetune, key)):
            if is_backbone_selector(selector):
                raise ConfigError(loaded.problem(("finetune", key, position), f"{selector!r} reaches into "
                                                 "model.backbone, but the model has none — select model.layers by "
                                                 "index, name or glob"))


def _normalization(loaded: LoadedConfig, train_x, feature_names: list[str] | None) -> list:
    """data.normalize's layer, fitted on the training features (none without them)."""
    data = loaded.config.data
    if data.normalize == "none" or train_x is None:
        return []
    return [normalization_layer(data.normalize, train_x, feature_names, data.train)]


def _text_preset(loaded: LoadedConfig):
    """A KerasHub text preset as the text column's encoder (mlcli.model.presets), or None."""
    backbone = loaded.config.model.backbone
    if backbone is None or backbone.preset is None or loaded.config.data.image is not None:
        return None
    from mlcli.model.presets import text_preset_encoder  # deferred: imports KerasHub

    return text_preset_encoder(loaded)


def _backbone(loaded: LoadedConfig, input_shape: tuple[int, ...]) -> list:
    """model.backbone as one nested model (its own preprocessing inside), frozen where finetune.freeze
    says `backbone` or `backbone/<glob>` (train reads those selectors too: phase 1 of a two-phase recipe)."""
    if loaded.config.model.backbone is None:
        return []
    backbone = backbone_model(loaded, input_shape)
    apply_backbone_selectors(loaded, backbone, reset=False)
    return [backbone]


def _body(loaded: LoadedConfig, output_float32: bool) -> list:
    """model.layers, the last one in float32 when asked."""
    specs = loaded.config.model.layers
    layers = []
    for index, spec in enumerate(specs):
        extra = {"dtype": "float32"} if output_float32 and index == len(specs) - 1 else None
        layers.append(build_layer(spec, ("model", "layers", index), loaded, extra))
    return layers


def _check_one_vector_per_row(loaded: LoadedConfig, model, input_shape: tuple[int, ...]) -> None:
    shape = tuple(model.output_shape)
    if len(shape) != 2:
        # Dense acts on the last axis only: (rows, 4, 2) features give (rows, 4, units), which no
        # loss can compare with one label per row (Keras fails mid-fit with a rank error).
        raise ConfigError(loaded.problem(
            ("model", "layers", len(loaded.config.model.layers) - 1),
            f"the model's output has shape {shape} for inputs of shape {(None, *input_shape)} — expected "
            "(None, units), one vector per row; add {type: Flatten} as the first layer",
        ))


def user_layers(model) -> list:
    """The layers as the user declared them (mlcli's preprocessing layer, or a typed model's input
    block, excluded)."""
    body = body_of(model)
    if body is not None:
        return list(body.layers)
    return [layer for layer in model.layers if layer.name not in (NORMALIZE_LAYER, BACKBONE) and not in_input_block(layer)
            and layer.name not in LABEL_LAYERS]


def layer_names(layers: list) -> list[tuple[str, str]]:
    """(name, class name) of Keras layers: what the selectors of mlcli.model.heads match and list."""
    return [(layer.name, type(layer).__name__) for layer in layers]
