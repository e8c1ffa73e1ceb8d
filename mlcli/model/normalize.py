"""Input normalization: the training features' statistics inside a Keras Normalization layer, so
the saved model normalizes what it is given by itself."""

from __future__ import annotations

import numpy as np

from mlcli.errors import DataError

NORMALIZE_LAYER = "mlcli_normalize"  # the preprocessing layer mlcli adds; not counted by selectors


MOMENT_ROWS = 8192  # rows converted to float64 at a time: 4 MB for 64 features


def feature_moments(kind: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, variance) that Normalization needs: standard, or minmax as (min, (max - min)^2).

    In float64, as NumPy's mean and var of the features as float64 compute them, to the bit — without
    a float64 copy of the features and its deviations (2 x 8 bytes a value): the rows are taken a
    block at a time, each block's column sums continuing the previous ones in row order."""
    flat = x.reshape(-1, x.shape[-1])
    if kind == "standard" and (flat.shape[1] == 1 or not flat.flags.c_contiguous):
        # NumPy sums a column stored contiguously pairwise, not row by row: blocks would not match it.
        whole = flat.astype(np.float64)
        return whole.mean(axis=0), whole.var(axis=0)
    if kind == "standard":
        mean = _column_sums(flat, lambda rows: rows.astype(np.float64)) / len(flat)
        return mean, _column_sums(flat, lambda rows: np.square(rows.astype(np.float64) - mean)) / len(flat)
    low, high = flat.min(axis=0).astype(np.float64), flat.max(axis=0).astype(np.float64)
    return low, (high - low) ** 2


def _column_sums(flat: np.ndarray, values) -> np.ndarray:
    """np.add.reduce(values(flat), axis=0), a block of rows at a time, adding in the same order: each
    block is reduced together with the sums so far, as its first row."""
    total = None
    for start in range(0, len(flat), MOMENT_ROWS):
        block = values(flat[start:start + MOMENT_ROWS])
        total = np.add.reduce(block if total is None else np.concatenate([total[None], block]), axis=0)
    return total


def normalization_layer(kind: str, x, feature_names: list[str] | None = None, source: str = ""):
    """Statistics of the training features, inside a Keras Normalization layer (saved with the model).

    `x`: the training features, or streamed data's statistics (anything with `.moments(kind)`,
    computed chunk by chunk: mlcli.data.stream)."""
    import keras  # deferred: imports TensorFlow

    mean, variance = x.moments(kind) if hasattr(x, "moments") else feature_moments(kind, x)
    check_normalizable(kind, mean, variance, feature_names, source)
    # A constant feature would be divided by ~0: scale it by 1 instead, so unseen values stay finite.
    variance = np.where(variance > 1e-12, variance, 1.0)
    return keras.layers.Normalization(
        axis=-1, mean=mean.astype(np.float32), variance=variance.astype(np.float32),
        name=NORMALIZE_LAYER, dtype="float32",
    )


def check_normalizable(kind: str, mean: np.ndarray, variance: np.ndarray, feature_names: list[str] | None,
                       source: str) -> None:
    """Finite features can still be too large for float32 statistics (a 3e38 makes the variance inf),
    which would silently turn that feature into a constant inside the saved model."""
    with np.errstate(over="ignore"):
        fits = np.isfinite(np.asarray(mean, dtype=np.float32)) & np.isfinite(np.asarray(variance, dtype=np.float32))
    if fits.all():
        return
    index = int(np.flatnonzero(~fits)[0])
    names = feature_names if feature_names and len(feature_names) == len(fits) else None
    what = f"column {names[index]!r}" if names else f"feature {index}"
    statistic = "variance" if kind == "standard" else "range squared"
    raise DataError(
        f"data.train: {source}: {what}: its values are too large to normalize in float32 (the {statistic} is "
        f"{float(variance[index]):.3g}, above float32's 3.4e38)",
        hint="rescale that column (other units, or a log), or set data.normalize: none",
    )
