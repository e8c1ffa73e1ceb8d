"""data.label_transform inside the model: the last layers undo the transform, and the loss is taken
on the transformed scale (docs/contract.md §6).

The model's output is always in the target's own units — predict, evaluate's metrics (mae, rmse, r2),
export and a plain `keras.saving.load_model` see dollars, not standard deviations. Only the loss looks
through the transform: `TransformedLoss` applies it to both the target and the prediction, so with
`standard` the body is trained on (y - mean) / std exactly as if the targets had been rescaled:

    standard: output = Rescaling(scale=std, offset=mean)(body)   loss = base((y - mean)/std, (p - mean)/std)
    log:      output = exp(body) - 1                             loss = base(log(1 + y), log(1 + p))

Both undo blocks are Keras's own layers (Rescaling, Activation), so the file loads without mlcli. The
loss is mlcli's, so `plain_compile_config` records the base loss in a saved file instead.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from mlcli.data.label_scale import LabelTransform

UNDO = "mlcli_label_undo"  # Rescaling: the body's output back to the target's units
EXP = "mlcli_label_exp"  # log only: exp() before the shift by -1
LAYERS = (UNDO, EXP)


def undo_layers(transform: LabelTransform) -> list:
    """The layers appended after the body; float32 even under mixed precision."""
    import keras  # deferred: imports TensorFlow

    if transform.kind == "log":
        return [keras.layers.Activation("exponential", name=EXP, dtype="float32"),
                keras.layers.Rescaling(scale=1.0, offset=-1.0, name=UNDO, dtype="float32")]
    scale = list(transform.std) if len(transform.std) > 1 else transform.std[0]
    offset = list(transform.mean) if len(transform.mean) > 1 else transform.mean[0]
    return [keras.layers.Rescaling(scale=scale, offset=offset, name=UNDO, dtype="float32")]


def transform_of(model) -> LabelTransform | None:
    """The transform a model undoes, read from its own layers (so a .keras file is self-describing)."""
    names = {layer.name: layer for layer in model.layers}
    if UNDO not in names:
        return None
    if EXP in names:
        return LabelTransform("log")
    layer = names[UNDO]
    as_tuple = lambda v: tuple(float(x) for x in np.ravel(np.asarray(v, dtype=np.float64)))  # noqa: E731
    return LabelTransform("standard", as_tuple(layer.offset), as_tuple(layer.scale))


def transformed_loss(base, transform: LabelTransform | None):
    """`base` (a loss name or a keras.losses.Loss) taken on the transformed scale; `base` itself without
    a transform."""
    if transform is None:
        return base
    return _loss_class()(base, transform)


@functools.lru_cache(maxsize=1)
def _loss_class():
    import keras  # deferred: imports TensorFlow

    class TransformedLoss(keras.losses.Loss):
        def __init__(self, base, transform: LabelTransform):
            name = base if isinstance(base, str) else base.name
            super().__init__(name=f"{name}_on_{transform.kind}_scale")
            self.base = base
            self.transform = transform
            self._fn = keras.losses.get(base) if isinstance(base, str) else base.call

        def _scale(self, y):
            ops = keras.ops
            if self.transform.kind == "log":
                # exp(z) - 1 + 1 is exp(z) again; the floor keeps an underflowed exp(z) finite
                return ops.log(ops.maximum(y + 1.0, 1e-7))
            mean = ops.convert_to_tensor(np.asarray(self.transform.mean, dtype=np.float32))
            std = ops.convert_to_tensor(np.asarray(self.transform.std, dtype=np.float32))
            return (y - mean) / std

        def call(self, y_true, y_pred):
            y_pred = keras.ops.cast(y_pred, "float32")
            y_true = keras.ops.cast(y_true, "float32")
            return self._fn(self._scale(y_true), self._scale(y_pred))

    return TransformedLoss


@contextlib.contextmanager
def plain_compile_config(model):
    """While saving: the compile config records the base loss, not mlcli's TransformedLoss, so plain
    Keras loads the file (its loss is then on the original scale; evaluate rebuilds the transformed one)."""
    loss = getattr(model, "loss", None)
    if loss is None or type(loss) is not _loss_class():
        yield
        return
    import keras  # deferred: imports TensorFlow

    original = model.get_compile_config

    def plain():
        config = original()
        if isinstance(config, dict):
            config = {**config, "loss": keras.saving.serialize_keras_object(loss.base)}
        return config

    model.get_compile_config = plain
    try:
        yield
    finally:
        del model.get_compile_config
