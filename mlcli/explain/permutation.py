"""Permutation importance: how much worse the model does when one input column is shuffled.

For each column and each repeat, the column's values are permuted across the rows (a seeded
permutation, the same for a given seed, column and repeat) while every other column keeps its
values; the drop in the metric (mlcli.explain.metric) against the unshuffled data is the column's
importance for that repeat. Mean and standard deviation over the repeats are reported.

Memory stays flat in the rows: the shuffled data is never materialised. The rows are scored a chunk
at a time: a chunk's copy gets the column's shuffled values gathered by index (x[perm[chunk], j]),
goes through the one forward path (mlcli.use.inference), and only the metric's running sums are
kept. Beyond the data itself, what is held is one permutation index and one chunk.

Plain tables shuffle one feature of the (rows, features) matrix; typed tables (docs/contract.md §6)
shuffle one raw column of the {column: values} dict the model takes — a categorical, text or date
column moves as a whole, before the model's own encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlcli.data.typed_values import row_count
from mlcli.explain.metric import Metric, Scorer

CHUNK_ROWS = 4096  # rows scored per forward call (rounded to whole batches)


@dataclass
class Importance:
    feature: str
    mean: float
    std: float
    drops: list[float]

    def document(self) -> dict:
        return {"feature": self.feature, "mean": self.mean, "std": self.std, "repeats": self.drops}


def columns_of(x, features: list[str] | None) -> list[tuple[str, object]]:
    """(name shown, key into x) for every column that can be shuffled."""
    if isinstance(x, dict):
        return [(name, name) for name in x]
    names = features if features and len(features) == x.shape[1] else [f"feature {i}" for i in range(x.shape[1])]
    return [(name, index) for index, name in enumerate(names)]


def _chunk(x, start: int, stop: int, key=None, order: np.ndarray | None = None):
    """Rows start:stop of x; with `key`, that column's values taken from the rows order[start:stop]."""
    if isinstance(x, dict):
        part = {name: values[start:stop] for name, values in x.items()}
        if key is not None:
            part[key] = x[key][order[start:stop]]
        return part
    part = x[start:stop]
    if key is not None:
        part = part.copy()
        part[:, key] = x[order[start:stop], key]
    return part


def score(inference, make_scorer, x, y: np.ndarray, chunk: int, key=None, order=None) -> float:
    scorer: Scorer = make_scorer()
    rows = row_count(x)
    for start in range(0, rows, chunk):
        stop = min(start + chunk, rows)
        scorer.add(inference.outputs(_chunk(x, start, stop, key, order)), y[start:stop])
    return scorer.value()


def permutation_importance(inference, make_scorer, metric: Metric, x, y: np.ndarray, features: list[str] | None,
                           repeats: int, seed: int) -> tuple[float, list[Importance]]:
    """(the metric on the unshuffled rows, each column's importance sorted from most to least important)."""
    batch = inference.batch_size
    chunk = max(batch, CHUNK_ROWS // batch * batch)
    rows = row_count(x)
    base = score(inference, make_scorer, x, y, chunk)
    results = []
    for position, (name, key) in enumerate(columns_of(x, features)):
        drops = []
        for repeat in range(repeats):
            order = np.random.default_rng([seed, position, repeat]).permutation(rows)
            drops.append(metric.drop(base, score(inference, make_scorer, x, y, chunk, key, order)))
        results.append(Importance(name, float(np.mean(drops)), float(np.std(drops)), [float(d) for d in drops]))
    results.sort(key=lambda r: -r.mean)
    return base, results
