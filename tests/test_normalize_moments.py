"""data.normalize's statistics are computed a block of rows at a time (no float64 copy of the training
features): they must equal NumPy's mean and var of the float64 features to the bit, so that a run's
Normalization layer, and every number after it, is what it was."""

from __future__ import annotations

import numpy as np
import pytest

from mlcli.model.normalize import MOMENT_ROWS, feature_moments


@pytest.mark.parametrize("shape", [(1, 3), (1151, 64), (MOMENT_ROWS + 1, 5), (3 * MOMENT_ROWS + 17, 2),
                                   (2 * MOMENT_ROWS + 3, 1), (700, 8, 8, 3)])
@pytest.mark.parametrize("scale, offset", [(1.0, 0.0), (1e4, 3e4), (1e-3, 1.0)])
def test_moments_equal_numpys_to_the_bit(shape, scale, offset):
    x = (np.random.default_rng(len(shape) + shape[0]).standard_normal(shape) * scale + offset).astype(np.float32)
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    mean, variance = feature_moments("standard", x)
    assert mean.dtype == variance.dtype == np.float64
    assert np.array_equal(mean, flat.mean(axis=0)) and np.array_equal(variance, flat.var(axis=0))
    low, span = feature_moments("minmax", x)
    assert np.array_equal(low, flat.min(axis=0)) and np.array_equal(span, (flat.max(axis=0) - flat.min(axis=0)) ** 2)
