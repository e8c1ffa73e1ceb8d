"""The input block of a model that takes images (docs/contract.md §7):

    keras.Input((H, W, C), name="image") -> data.augment's layers -> Rescaling(1/255) (no backbone)

The data pipeline hands the model float32 pixels in [0, 255] (mlcli.data.image_decode), so the scaling
is inside model.keras and predict, export and a plain keras.saving.load_model apply the same one.
Keras's augmentation layers change images only when called with training=True: inactive in evaluate,
predict and export by themselves. A backbone brings its own preprocessing instead of the Rescaling,
and comes right after this block (mlcli.model.build).
"""

from __future__ import annotations

from mlcli.config.load import LoadedConfig
from mlcli.model.layers import build_layer

INPUT_NAME = "image"
RESCALE_NAME = "rescale_pixels"
AUGMENT_PREFIX = "augment_"  # data.augment's layers are named augment_<index>_<type> (unless given a name)


def image_input_layers(loaded: LoadedConfig, input_shape: tuple[int, ...], rescale: bool = True) -> list:
    """The layers before the model's body: input, augmentation, and (without a backbone) the scaling
    of pixels to [0, 1]."""
    import keras  # deferred: imports TensorFlow

    layers = [keras.Input(shape=input_shape, name=INPUT_NAME)]
    for index, spec in enumerate(loaded.config.data.augment):
        name = f"{AUGMENT_PREFIX}{index}_{spec.type.lower()}"
        layers.append(build_layer(spec, ("data", "augment", index), loaded, {"name": name}))
    if rescale:
        layers.append(keras.layers.Rescaling(1.0 / 255, name=RESCALE_NAME))
    return layers


def in_input_block(layer) -> bool:
    """True for a layer of the image input block (not one of the user's model.layers)."""
    return layer.name == RESCALE_NAME or layer.name.startswith(AUGMENT_PREFIX)
