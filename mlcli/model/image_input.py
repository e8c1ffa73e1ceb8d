"""The input block of a model that takes images (docs/contract.md §7):

    keras.Input((H, W, C), name="image") -> Rescaling(1/255) (only without a backbone)

The data pipeline hands the model float32 pixels in [0, 255] (mlcli.data.image_decode), so the scaling
is inside model.keras and predict, export and a plain keras.saving.load_model apply the same one. A
backbone brings its own preprocessing instead of the Rescaling, and comes right after this block
(mlcli.model.build). data.augment is NOT in the model: it is applied to the training batches in the
tf.data pipeline (mlcli.model.augment says why).
"""

from __future__ import annotations

from mlcli.config.load import LoadedConfig

INPUT_NAME = "image"
RESCALE_NAME = "rescale_pixels"


def image_input_layers(loaded: LoadedConfig, input_shape: tuple[int, ...], rescale: bool = True) -> list:
    """The layers before the model's body: the input and (without a backbone) the scaling of pixels to [0, 1]."""
    import keras  # deferred: imports TensorFlow

    layers = [keras.Input(shape=input_shape, name=INPUT_NAME)]
    if rescale:
        layers.append(keras.layers.Rescaling(1.0 / 255, name=RESCALE_NAME))
    return layers


def in_input_block(layer) -> bool:
    """True for a layer of the image input block (not one of the user's model.layers)."""
    return layer.name == RESCALE_NAME
