"""Typed features fitted in data.stream's pass: each feature's statistics tallied chunk by chunk over
the training split's rows (never a validation or test row), then finished into the FittedFeature the
in-memory fit makes (mlcli.data.fit_features) — the same vocabularies, the same statistics.

What is kept grows with the number of distinct values, not with the number of rows:

- categorical, binary: a count per distinct value; text: a count per token (and per document), per
  document length. Vocabularies are then ranked exactly as in memory (frequency, then value), with
  max_tokens and min_frequency.
- numeric: count, mean and sum of squared deviations (merged chunk by chunk in float64: Normalization's
  mean and variance equal the in-memory ones up to float64 rounding, a relative 1e-9 in the tests), min,
  max, and a count per distinct value for the median (missing: auto | median) and the most frequent
  value. The median is exact while a column holds at most EXACT_VALUES distinct values in the training
  split. Beyond that, values are truncated to fewer significant bits (4 at a time, the fewest that fit),
  so the median — and the most frequent value — are those of the truncated values: within a relative
  2^-bits of the exact one, `bits` (recorded in the feature's statistics as `median_bits`) being at
  least 52 - 4k for the k-th truncation. The truncation is the same whatever the order of the rows.
- date: its four parts are whole numbers, counted exactly.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from mlcli.data.feature_types import FeaturePlan
from mlcli.data.fit_features import FittedFeature, TextTally, categorical_from_counts, tokenize
from mlcli.data.typed_values import DATE_PARTS, missing_rows
from mlcli.errors import DataError

EXACT_VALUES = 1 << 16  # distinct values of a numeric column counted exactly (about 2 MB per column)
_MANTISSA_BITS = 52


class ValueCounts:
    """How many times each float64 value occurs, at most EXACT_VALUES distinct ones (see the module
    docstring for what happens beyond)."""

    def __init__(self, limit: int = EXACT_VALUES):
        self.limit = limit
        self.dropped_bits = 0
        self.values = np.empty(0, dtype=np.float64)
        self.counts = np.empty(0, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        merged = np.concatenate([self.values, self._truncated(values.astype(np.float64))])
        weights = np.concatenate([self.counts, np.ones(len(values), dtype=np.int64)])
        self.values, inverse = np.unique(merged, return_inverse=True)
        self.counts = np.bincount(inverse, weights=weights).astype(np.int64)
        while len(self.values) > self.limit and self.dropped_bits < _MANTISSA_BITS:
            self.dropped_bits = min(_MANTISSA_BITS, self.dropped_bits + 4)
            self.values, inverse = np.unique(self._truncated(self.values), return_inverse=True)
            self.counts = np.bincount(inverse, weights=self.counts).astype(np.int64)

    def _truncated(self, values: np.ndarray) -> np.ndarray:
        if not self.dropped_bits:
            return values
        mask = np.uint64(0xFFFFFFFFFFFFFFFF) << np.uint64(self.dropped_bits)
        return (values.view(np.uint64) & mask).view(np.float64)

    @property
    def bits(self) -> int:
        """Significant bits kept (52: exact)."""
        return _MANTISSA_BITS - self.dropped_bits

    def median(self) -> float:
        cumulative = np.cumsum(self.counts)
        total = int(cumulative[-1])
        low = self.values[int(np.searchsorted(cumulative, (total - 1) // 2, side="right"))]
        high = self.values[int(np.searchsorted(cumulative, total // 2, side="right"))]
        return float((low + high) / 2)

    def most_frequent(self) -> float:
        return float(self.values[int(np.argmax(self.counts))])  # ties: the smallest value (sorted)


class _Moments:
    """count, mean, sum of squared deviations, min and max per column (Chan et al.'s merge, float64)."""

    def __init__(self, width: int):
        self.count = 0
        self.mean = np.zeros(width)
        self.m2 = np.zeros(width)
        self.low = np.full(width, np.inf)
        self.high = np.full(width, -np.inf)

    def add(self, x: np.ndarray) -> None:
        if not len(x):
            return
        x = x.astype(np.float64)
        n, mean = len(x), x.mean(axis=0)
        self.merge(n, mean, ((x - mean) ** 2).sum(axis=0), x.min(axis=0), x.max(axis=0))

    def merge(self, n: int, mean, m2, low, high) -> None:
        total = self.count + n
        delta = np.asarray(mean, dtype=np.float64) - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta ** 2 * (self.count * n / total)
        self.low, self.high = np.minimum(self.low, low), np.maximum(self.high, high)
        self.count = total

    def with_fill(self, missing: int, fill) -> "_Moments":
        """These moments with `missing` more rows of the value `fill` (what Normalization is fitted on)."""
        out = _Moments(len(self.mean))
        out.count, out.mean, out.m2, out.low, out.high = self.count, self.mean, self.m2, self.low, self.high
        if missing and fill is not None:
            fill = np.asarray(fill, dtype=np.float64)
            out.merge(missing, fill, np.zeros_like(fill), fill, fill)
        return out

    def normalization(self, kind: str) -> tuple[list[float] | None, list[float] | None]:
        if kind == "none":
            return None, None
        if kind == "standard":
            mean, variance = self.mean, self.m2 / self.count
        else:
            mean, variance = self.low, (self.high - self.low) ** 2
        return [float(v) for v in mean], [float(v) for v in variance]


class FeatureTally:
    """One feature's statistics over the training rows seen so far."""

    def __init__(self, plan: FeaturePlan):
        self.plan = plan
        self.rows = 0
        self.missing = 0
        width = len(DATE_PARTS) if plan.type == "date" else 1
        if plan.type in ("numeric", "date"):
            self.moments = _Moments(width)
            self.values = [ValueCounts() for _ in range(width)]
            self.first: tuple | None = None
            self.last: tuple | None = None
        elif plan.type == "text":
            self.text = TextTally()
        else:
            self.counts: Counter = Counter()

    def add(self, values: np.ndarray) -> None:
        """The feature's model input (mlcli.data.typed_values.model_input) of some training rows."""
        plan = self.plan
        missing = missing_rows(values, plan)
        self.rows += len(values)
        self.missing += int(missing.sum())
        if plan.type in ("numeric", "date"):
            present = values[~missing].astype(np.float64)
            self.moments.add(present)
            for j, counts in enumerate(self.values):
                counts.add(present[:, j])
            if plan.type == "date" and len(present):
                days = [tuple(row) for row in present[:, :3].astype(int).tolist()]
                self.first = min(days + ([self.first] if self.first else []))
                self.last = max(days + ([self.last] if self.last else []))
        elif plan.type == "text":
            self.text.add(tokenize(values[:, 0]))
        else:
            self.counts.update(values[:, 0].tolist())

    def fitted(self, normalize: str) -> FittedFeature:
        plan = self.plan
        if self.missing == self.rows:
            raise DataError(f"data.train: column {plan.name!r}: every value in the training split is missing",
                            hint="exclude the column (data.exclude), or fill it in the file")
        if plan.type == "text":
            return self.text.fitted(plan, self.rows, self.missing)
        if plan.type in ("categorical", "binary"):
            return categorical_from_counts(plan, self.rows, self.missing, self.counts)
        fill = self._fill()
        kind = plan.options.get("normalize") or normalize
        mean, variance = self.moments.with_fill(self.missing, fill).normalization(kind)
        indicator = plan.missing == "auto" and self.missing > 0
        if plan.type == "date":
            summary = {"first": "%04d-%02d-%02d" % self.first, "last": "%04d-%02d-%02d" % self.last,
                       "parts": list(DATE_PARTS)}
        else:
            present = self.moments
            summary = {"mean": float(present.mean[0]), "std": float(np.sqrt(present.m2[0] / present.count)),
                       "min": float(present.low[0]), "max": float(present.high[0])}
            if self.values[0].bits < _MANTISSA_BITS:
                summary["median_bits"] = self.values[0].bits
        return FittedFeature(plan, self.rows, self.missing, kind, fill, indicator, mean, variance, summary=summary)

    def _fill(self):
        policy = self.plan.missing
        if self.plan.type == "date":
            return [c.median() for c in self.values] if policy in ("auto", "median") else None
        if policy in ("auto", "median"):
            return self.values[0].median()
        if policy == "mean":
            return float(self.moments.mean[0])
        if policy == "most_frequent":
            return self.values[0].most_frequent()
        return None  # error, drop: no missing value reaches the model


def fitted_features(tallies: list[FeatureTally], normalize: str) -> list[FittedFeature]:
    return [tally.fitted(normalize) for tally in tallies]
