"""Input normalization: the training features' statistics inside a Keras Normalization layer, so
the saved model normalizes what it is given by itself."""

from __future__ import annotations

import numpy as np

from mlcli.errors import DataError

NORMALIZE_LAYER = "mlcli_normalize"  # the preprocessing layer mlcli adds; not counted by selectors


def feature_moments(kind: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, variance) that Normalization needs: standard, or minmax as (min, (max - min)^2)."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    if kind == "standard":
        return flat.mean(axis=0), flat.var(axis=0)
    low, high = flat.min(axis=0), flat.max(axis=0)
    return low, (high - low) ** 2


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
