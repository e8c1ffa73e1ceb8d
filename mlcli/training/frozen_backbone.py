"""A frozen backbone's outputs computed once, then only the layers after it trained on them
(training.cache_frozen_backbone, docs/contract.md §7).

With the whole backbone frozen, no data.augment and nothing in the backbone that behaves differently
in training (Dropout, noise: only BatchNormalization, which a frozen Keras layer runs in inference
mode), the backbone maps each image to the same vector at every epoch: computing it once and training
the layers after it on those vectors is the same math as running the whole model at every step, at the
cost of one pass over the images. (Ludwig does the same for its frozen pretrained encoders.)

The head model shares the run model's layers, optimizer, loss and metric objects, so every weight it
trains and every running total it keeps is the run model's own; the callbacks are bound to the run
model (model.keras, the resume state, EarlyStopping's weights are the whole model's), and a small
callback passes their stop requests on to the head model's loop.
"""

from __future__ import annotations

import inspect

import numpy as np

from mlcli.data.split import Split, aligned, constant


def cacheable_backbone(config, model, prepared, augment):
    """The run model's backbone when its outputs can be computed once (see the module's docstring),
    else None."""
    import keras  # deferred: imports TensorFlow
    import tensorflow as tf  # deferred: imports TensorFlow

    from mlcli.model.backbone import find_backbone  # deferred: imports TensorFlow

    if not config.training.cache_frozen_backbone or augment is not None:
        return None
    if config.model.backbone is None or config.model.backbone.preset is not None:
        return None  # keras.applications backbones only: a preset's layers may add their own losses
    backbone = find_backbone(model)
    if backbone is None or not model.layers or model.layers[0] is not backbone or backbone.trainable_weights:
        return None
    if tf.distribute.has_strategy() or model.distribute_strategy is not tf.distribute.get_strategy():
        return None
    splits = [prepared.train] + ([prepared.validation] if prepared.validation is not None else [])
    if not all(isinstance(split, Split) and isinstance(split.x, np.ndarray) for split in splits):
        return None  # streamed images, or typed features
    for layer in backbone._flatten_layers(include_self=False):
        if isinstance(layer, keras.Model):
            continue  # a nested model only passes `training` on to its layers
        if getattr(layer, "activity_regularizer", None) is not None:
            return None
        if isinstance(layer, keras.layers.BatchNormalization):
            continue  # frozen: inference mode in training too
        if "training" in inspect.signature(layer.call).parameters:
            return None  # Dropout, noise...: random in training, not in the once-computed outputs
    return backbone


def feature_split(backbone, split: Split, batch_size: int) -> Split:
    """`split` with the backbone's outputs in place of its images, row for row. The images are read in
    place (predict on the array itself would first copy all of them into a tensor)."""
    import tensorflow as tf  # deferred: imports TensorFlow

    split.x = aligned(split.x)  # the unaligned array is dropped: one copy of the images stays
    images, rows = constant(tf, split.x), split.rows
    batches = tf.data.Dataset.range(0, rows, batch_size).map(
        lambda start: images[start:tf.minimum(start + batch_size, rows)])
    features = np.asarray(backbone.predict(batches, verbose=0), dtype=np.float32)
    return Split(x=aligned(features), y=split.y, name=split.name, notes=list(split.notes))


def head_model(model, backbone):
    """The layers after `backbone` as a model of their own, compiled to share the run model's optimizer,
    loss and metric objects."""
    import keras  # deferred: imports TensorFlow

    head = keras.Sequential([keras.Input(tuple(backbone.output_shape[1:]))] + list(model.layers[1:]),
                            name=f"{model.name}_head")
    head.compile(optimizer=model.optimizer, loss=model.loss, steps_per_execution=model.steps_per_execution,
                 jit_compile=model.jit_compile)
    # The same trackers: the running totals the head model updates are the run model's, which the
    # resume state saves and a resumed epoch puts back.
    head._loss_tracker = model._loss_tracker
    head._compile_metrics = model._compile_metrics
    head.history = None  # what head.fit returns: the run keeps its own history (mlcli.run.history)
    return head


def callbacks_of(model, head, callbacks: list):
    """The run's callbacks bound to the run model, for head.fit: they save and restore the whole
    model; what they ask of it (stop_training) the head model's loop is told."""
    import keras  # deferred: imports TensorFlow

    class PassStop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            head.stop_training = head.stop_training or model.stop_training

        on_epoch_end = on_train_batch_end

    model.stop_training = False
    return keras.callbacks.CallbackList(list(callbacks) + [PassStop()], add_history=False, add_progbar=False,
                                        model=model)


def note(rows: int) -> str:
    return (f"model.backbone frozen: its outputs for the {rows:,} training images computed once, then only the "
            f"layers after it train on them (the same math; training.cache_frozen_backbone: false turns this off)")
