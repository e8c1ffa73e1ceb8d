"""The typed input block: named raw inputs -> one encoder per feature -> concatenation -> the user's
Sequential body (model.layers), as one Keras functional model.

Only Keras's own layers and ops are used, so plain `keras.saving.load_model` loads the model (safe
mode included) and it takes a dict of raw columns, shaped (rows, 1) — a date (rows, 4): year, month,
day, day of week (mlcli.data.typed_values):

- numeric: a missing value (NaN) filled by its policy, then Normalization; under missing: auto with
  gaps in training, a was-missing column beside it — every numeric column in one block
  (mlcli_numeric_normalize), its columns gathered back into the order of the features
- categorical: StringLookup over the training vocabulary (index 0: out of vocabulary), then one-hot
  (CategoryEncoding) or an Embedding
- binary: 0 for the first of its two values, 1 for the second, 0.5 when missing or unseen (with a
  was-missing column under missing: auto)
- text: TextVectorization with the training vocabulary (tf_idf, multi_hot, count), or token ids
  embedded and averaged (output: sequence)
- date: year, month, day and day of week, filled and normalized like numbers

The body is a nested Sequential named BODY: finetune's selectors index its layers as before.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

import numpy as np

from mlcli.data.fit_features import SEQUENCE_LENGTH
from mlcli.model.normalize import check_normalizable

BODY = "mlcli_body"  # the user's Sequential (model.layers) inside a typed model
FEATURES = "mlcli_features"  # the concatenation of every encoded feature: the body's input
NUMERIC_VALUES = "mlcli_numeric_values"  # every numeric column side by side: the numeric block's input
NUMERIC_NORMALIZE = "mlcli_numeric_normalize"  # the numeric block's one Normalization (every numeric column)
_INPUT_NAME_WARNING = "When providing `inputs` as a dict"


def typed_model(fitted: list, body_layers: list, name: str, tail: list = (), text_encoder=None):
    """The functional model: every feature's input and encoder, then the body (then `tail`: the layers
    undoing data.label_transform, mlcli.model.label_transform). `text_encoder`: a text column's encoder
    instead of TextVectorization (a KerasHub text preset, mlcli.model.presets)."""
    import keras  # deferred: imports TensorFlow

    inputs, encoded, numeric = {}, [], []
    for feature in fitted:
        plan = feature.plan
        shape = (4,) if plan.type == "date" else (1,)
        dtype = "float32" if plan.type in ("numeric", "date") else "string"
        inputs[plan.name] = keras.Input(shape=shape, dtype=dtype, name=input_name(plan.name))
        prefix = _prefix(fitted, feature)
        if plan.type == "numeric":  # encoded together below, in one block; its place kept here
            numeric.append(feature)
            encoded.append(feature)
            continue
        if plan.type == "text" and text_encoder is not None:
            encoded += text_encoder(inputs[plan.name], prefix)
            continue
        encoded += _ENCODERS[plan.type](feature, inputs[plan.name], prefix)
    if numeric and any(t.shape[-1] is None for t in encoded if id(t) not in {id(f) for f in numeric}):
        # an encoder of unknown width: no gather can put the columns back, so one encoder per column
        encoded = [t for f in encoded for t in (_numeric(f, inputs[f.plan.name], _prefix(fitted, f))
                                                if any(f is g for g in numeric) else [f])]
    elif numeric:
        encoded = _numeric_block(numeric, [inputs[f.plan.name] for f in numeric], encoded)
    features = keras.layers.Concatenate(name=FEATURES, dtype="float32")(encoded) if len(encoded) > 1 \
        else keras.layers.Identity(name=FEATURES, dtype="float32")(encoded[0])
    body = keras.Sequential(body_layers, name=BODY)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_INPUT_NAME_WARNING)  # a column named a/b: input a_b
        output = body(features)
        for layer in tail:
            output = layer(output)
        return keras.Model(inputs, output, name=name)


def body_of(model):
    """The body (model.layers) of a typed model; None for a plain Sequential."""
    names = [layer.name for layer in model.layers]
    return model.get_layer(BODY) if BODY in names else None


def input_name(column: str) -> str:
    """A Keras input name for a column ('/' is the one character Keras refuses in a name)."""
    return column.replace("/", "_")


def _prefix(fitted: list, feature) -> str:
    """Its encoder layers' name prefix: mlcli_<input index>_<column> (input:<column> selectors read it)."""
    index = next(i for i, f in enumerate(fitted) if f is feature)
    return f"mlcli_{index}_{_safe(feature.plan.name)}"


def _safe(column: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", column)[:40]


def _float32(keras, tensor):
    return keras.ops.cast(tensor, "float32")


# ---- one encoder per type: (feature, its input, a name prefix) -> the tensors it adds ------------

def _numeric(feature, value, prefix: str) -> list:
    import keras  # deferred: imports TensorFlow

    out = value
    missing = keras.ops.isnan(value)
    if feature.fill is not None:
        out = keras.ops.where(missing, np.asarray(feature.fill, dtype="float32"), value)
    if feature.mean is not None:
        check_normalizable(feature.normalize, np.asarray(feature.mean), np.asarray(feature.variance),
                           [feature.name] * len(feature.mean), "the training split")
        variance = [v if v > 1e-12 else 1.0 for v in feature.variance]  # a constant column: scaled by 1
        out = keras.layers.Normalization(axis=-1, mean=feature.mean, variance=variance, name=f"{prefix}_normalize",
                                         dtype="float32")(out)
    parts = [out]
    if feature.indicator:
        parts.append(_float32(keras, keras.ops.any(missing, axis=-1, keepdims=True)))
    return parts


def _numeric_block(features: list, values: list, encoded: list) -> list:
    """Every numeric column (rows, 1) encoded at once — what _numeric computes for each, as one
    (rows, n) block: one concatenation, one isnan, one fill, one Normalization, one set of was-missing
    columns (far fewer ops per step and a smaller graph to trace than n encoders). `encoded`: the
    other encoders' tensors with each numeric feature at its place; returns the tensors to concatenate
    (a gather puts the columns back in feature order: value, was-missing, ...)."""
    import keras  # deferred: imports TensorFlow

    out = keras.layers.Concatenate(name=NUMERIC_VALUES, dtype="float32")(values) if len(values) > 1 else values[0]
    missing = keras.ops.isnan(out)
    if any(f.fill is not None for f in features):  # NaN stays NaN for a column without a fill
        fills = np.asarray([[math.nan if f.fill is None else f.fill for f in features]], dtype="float32")
        out = keras.ops.where(missing, fills, out)
    if any(f.mean is not None for f in features):
        for f in features:
            if f.mean is not None:
                check_normalizable(f.normalize, np.asarray(f.mean), np.asarray(f.variance), [f.name] * len(f.mean),
                                   "the training split")
        mean = [f.mean[0] if f.mean is not None else 0.0 for f in features]  # 0 and 1: x exactly as it was
        variance = [(f.variance[0] if f.variance[0] > 1e-12 else 1.0) if f.mean is not None else 1.0
                    for f in features]  # a constant column: scaled by 1
        out = keras.layers.Normalization(axis=-1, mean=mean, variance=variance, name=NUMERIC_NORMALIZE,
                                         dtype="float32")(out)
    pieces, order, width = [out], {}, len(features)
    for position, feature in enumerate(features):
        order[id(feature)] = [position]
    flagged = [position for position, f in enumerate(features) if f.indicator]
    if flagged:
        flags = _float32(keras, missing)
        pieces.append(flags if len(flagged) == width else keras.ops.take(flags, flagged, axis=1))
        for slot, position in enumerate(flagged):
            order[id(features[position])].append(width + slot)
        width += len(flagged)
    columns = []  # for each column of the features in feature order: where it is in `pieces`
    for tensor in encoded:
        if id(tensor) in order:
            columns += order[id(tensor)]
            continue
        size = tensor.shape[-1]
        pieces.append(tensor)
        columns += list(range(width, width + size))
        width += size
    block = keras.layers.Concatenate(name=f"{FEATURES}_grouped", dtype="float32")(pieces) if len(pieces) > 1 \
        else pieces[0]
    if columns == list(range(width)):
        return [block]
    return [keras.ops.take(block, columns, axis=1)]


def _categorical(feature, value, prefix: str) -> list:
    import keras  # deferred: imports TensorFlow

    plan = feature.plan
    if feature.fill is not None:  # most_frequent: "" is the mask token (index 0), then becomes the fill
        lookup = keras.layers.StringLookup(vocabulary=feature.vocabulary, mask_token="", num_oov_indices=1,
                                           output_mode="int", name=f"{prefix}_lookup")
        index = lookup(value)
        index = keras.ops.where(keras.ops.equal(index, 0), feature.vocabulary.index(feature.fill) + 2, index)
        size = len(feature.vocabulary) + 2
    else:  # index 0: out of vocabulary ("" is a value like any other: missing as its own category)
        lookup = keras.layers.StringLookup(vocabulary=feature.vocabulary, num_oov_indices=1, output_mode="int",
                                           name=f"{prefix}_lookup")
        index = lookup(value)
        size = len(feature.vocabulary) + 1
    if plan.options.get("encoding") == "embedding":
        dim = plan.options.get("embedding_dim") or embedding_size(size)
        embedded = keras.layers.Embedding(size, dim, name=f"{prefix}_embedding", dtype="float32")(index)
        return [keras.layers.Flatten(name=f"{prefix}_flatten", dtype="float32")(embedded)]
    return [keras.layers.CategoryEncoding(num_tokens=size, output_mode="one_hot", name=f"{prefix}_one_hot",
                                          dtype="float32")(index)]


def _binary(feature, value, prefix: str) -> list:
    import keras  # deferred: imports TensorFlow

    vocabulary = feature.vocabulary
    lookup = keras.layers.StringLookup(vocabulary=vocabulary, mask_token="", num_oov_indices=1, output_mode="int",
                                       name=f"{prefix}_lookup")
    index = lookup(value)  # 0: missing, 1: unseen, 2: the first value, 3: the second
    if feature.fill is not None:
        index = keras.ops.where(keras.ops.equal(index, 0), vocabulary.index(feature.fill) + 2, index)
    positive = len(vocabulary) + 1
    encoded = _float32(keras, keras.ops.equal(index, positive)) + 0.5 * _float32(keras, keras.ops.less(index, 2))
    parts = [encoded]
    if feature.indicator:
        parts.append(_float32(keras, keras.ops.equal(index, 0)))
    return parts


def _text(feature, value, prefix: str) -> list:
    import keras  # deferred: imports TensorFlow

    output = feature.plan.options.get("output") or "tf_idf"
    if output == "sequence":

        length = feature.plan.options.get("sequence_length") or SEQUENCE_LENGTH
        ids = keras.layers.TextVectorization(vocabulary=feature.vocabulary, output_mode="int",
                                             output_sequence_length=length, name=f"{prefix}_tokens")(value)
        dim = feature.plan.options.get("embedding_dim") or embedding_size(len(feature.vocabulary) + 2)
        embedded = keras.layers.Embedding(len(feature.vocabulary) + 2, dim, mask_zero=True,
                                          name=f"{prefix}_embedding", dtype="float32")(ids)
        return [keras.layers.GlobalAveragePooling1D(name=f"{prefix}_average", dtype="float32")(embedded)]
    arguments: dict[str, Any] = {"idf_weights": feature.idf} if output == "tf_idf" else {}
    bag = keras.layers.TextVectorization(vocabulary=feature.vocabulary, output_mode=output, name=f"{prefix}_words",
                                         **arguments)(value)
    return [keras.layers.Flatten(name=f"{prefix}_flatten", dtype="float32")(bag)]


def embedding_size(tokens: int) -> int:
    """fastai's rule of thumb for an embedding's width: min(50, 1.6 * tokens^0.56)."""
    return max(2, min(50, round(1.6 * math.pow(tokens, 0.56))))


_ENCODERS = {"numeric": _numeric, "date": _numeric, "categorical": _categorical, "binary": _binary,
             "text": _text}
