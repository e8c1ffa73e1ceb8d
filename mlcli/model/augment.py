"""data.augment: Keras's image augmentation layers, applied to the training batches only, in the tf.data
pipeline (docs/contract.md §7) — never inside model.keras.

Not inside the model, because a Keras augmentation layer changes images whenever it is called without
an explicit training=False: a plain `keras.saving.load_model(...)(images)`, a SavedModel's serving
function and an ONNX graph would all flip and rotate at inference (and ONNX has no kernel for the
random ops). In the pipeline they also run on the CPU beside the training step, as Keras's guide
advises for CPU training. Validation, test, evaluate and predict never see them.

Each layer is seeded from the run's seed (seed + its index) unless the config gives a seed: a rerun
draws the same transformations. A resumed run repeats the batch order exactly; its augmentation
draws continue afresh.
"""

from __future__ import annotations

from mlcli.config.load import LoadedConfig
from mlcli.model.layers import build_layer


def augmentation(loaded: LoadedConfig):
    """A function (images, labels) -> (augmented images, labels) for the training batches, or None."""
    specs = loaded.config.data.augment
    if not specs:
        return None
    layers = []
    for index, spec in enumerate(specs):
        extra = {"seed": loaded.config.seed + index} if "seed" in _arguments_of(spec.type) else None
        layers.append(build_layer(spec, ("data", "augment", index), loaded, extra))

    def apply(images, labels):
        for layer in layers:
            images = layer(images, training=True)
        return images, labels

    return apply


def _arguments_of(name: str) -> list[str]:
    from mlcli.config.keras_rules import accepted_arguments  # deferred: reads Keras's classes
    from mlcli.model.layers import layer_classes  # deferred: imports TensorFlow

    cls = layer_classes().get(name)
    return accepted_arguments(cls) if cls is not None else []
