"""What each typed feature learns from the training split — and from nothing else: fill values,
normalization statistics, vocabularies (mlcli.model.features puts them inside the model).

Vocabularies are deterministic: sorted by frequency in the training split, then by value. Text is
tokenized exactly as Keras's TextVectorization does (lower case, punctuation stripped, split on
whitespace), so the vocabulary counted here is the one the layer will look up.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from mlcli.data.feature_types import FeaturePlan
from mlcli.data.typed_values import DATE_PARTS, missing_rows
from mlcli.errors import DataError

TEXT_MAX_TOKENS = 20000  # text's default vocabulary cap (TextVectorization's usual order of magnitude)
SEQUENCE_LENGTH = 32  # text with output: sequence: tokens kept per value by default
# The punctuation TextVectorization strips (its lower_and_strip_punctuation standardization).
KERAS_PUNCTUATION = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'


@dataclass
class FittedFeature:
    """A typed feature with what it learned from the training split."""

    plan: FeaturePlan
    rows: int  # training-split rows
    missing_count: int  # of them, with this feature missing
    normalize: str = "none"  # numeric and date: standard | minmax | none
    fill: float | list[float] | str | None = None  # the value a missing one becomes (None: not filled)
    indicator: bool = False  # a was-missing column beside the value (missing: auto, with gaps in training)
    mean: list[float] | None = None  # Normalization's statistics (numeric: 1 value, date: 4)
    variance: list[float] | None = None
    vocabulary: list[str] | None = None  # categorical, binary: values; text: tokens
    idf: list[float] | None = None  # text with output: tf_idf
    summary: dict = field(default_factory=dict)  # what the feature table and run.json show

    @property
    def name(self) -> str:
        return self.plan.name

    def record(self) -> dict:
        """run.json's (and mlcli.json's) entry: the plan, the missing count, the statistics — vocabularies
        by their size only (they live inside the model)."""
        record = {**self.plan.record(), "missing_count": self.missing_count, "rows": self.rows}
        if self.vocabulary is not None:
            record["vocabulary_size"] = len(self.vocabulary)
        if self.fill is not None:
            record["fill"] = self.fill
        record["indicator"] = self.indicator
        record["statistics"] = self.summary
        return record


def fit_features(plans: list[FeaturePlan], x: dict, normalize: str) -> list[FittedFeature]:
    """Each feature fitted on the training split's values `x` ({column: values}); `normalize` is
    data.normalize (a numeric or date feature's own normalize: wins)."""
    return [_FIT[plan.type](plan, x[plan.name], normalize) for plan in plans]


def _missing_summary(plan: FeaturePlan, values: np.ndarray) -> tuple[np.ndarray, int]:
    missing = missing_rows(values, plan)
    if missing.all():
        raise DataError(f"data.train: column {plan.name!r}: every value in the training split is missing",
                        hint="exclude the column (data.exclude), or fill it in the file")
    return missing, int(missing.sum())


def _numeric(plan: FeaturePlan, values: np.ndarray, normalize: str) -> FittedFeature:
    missing, count = _missing_summary(plan, values)
    present = values[~missing, 0].astype(np.float64)
    fill = _fill_number(plan.missing, present)
    filled = np.where(missing, fill if fill is not None else 0.0, values[:, 0]).astype(np.float64)
    kind = plan.options.get("normalize") or normalize
    mean, variance = _moments(kind, filled.reshape(-1, 1))
    summary = {"mean": float(present.mean()), "std": float(present.std()), "min": float(present.min()),
               "max": float(present.max())}
    return FittedFeature(plan, len(values), count, kind, fill, plan.missing == "auto" and count > 0,
                         mean, variance, summary=summary)


def _date(plan: FeaturePlan, values: np.ndarray, normalize: str) -> FittedFeature:
    missing, count = _missing_summary(plan, values)
    present = values[~missing].astype(np.float64)
    fill = None
    if plan.missing in ("auto", "median"):
        fill = [float(v) for v in np.median(present, axis=0)]
    filled = np.where(missing[:, None], np.asarray(fill if fill is not None else [0.0] * 4), values)
    kind = plan.options.get("normalize") or normalize
    mean, variance = _moments(kind, filled.astype(np.float64))
    first = min(map(tuple, present[:, :3].astype(int).tolist()))
    last = max(map(tuple, present[:, :3].astype(int).tolist()))
    summary = {"first": "%04d-%02d-%02d" % first, "last": "%04d-%02d-%02d" % last, "parts": list(DATE_PARTS)}
    return FittedFeature(plan, len(values), count, kind, fill, plan.missing == "auto" and count > 0,
                         mean, variance, summary=summary)


def _fill_number(policy: str, present: np.ndarray) -> float | None:
    if policy in ("auto", "median"):
        return float(np.median(present))
    if policy == "mean":
        return float(present.mean())
    if policy == "most_frequent":
        values, counts = np.unique(present, return_counts=True)
        return float(values[np.argmax(counts)])  # ties: the smallest value (np.unique sorts)
    return None  # error, drop: no missing value reaches the model


def _moments(kind: str, x: np.ndarray) -> tuple[list[float] | None, list[float] | None]:
    """What keras.layers.Normalization needs: standard (mean, variance) or minmax (min, range^2)."""
    if kind == "none":
        return None, None
    if kind == "standard":
        mean, variance = x.mean(axis=0), x.var(axis=0)
    else:
        mean, variance = x.min(axis=0), (x.max(axis=0) - x.min(axis=0)) ** 2
    return [float(v) for v in mean], [float(v) for v in variance]


def _categorical(plan: FeaturePlan, values: np.ndarray, normalize: str) -> FittedFeature:
    _, count = _missing_summary(plan, values)
    return categorical_from_counts(plan, len(values), count, Counter(values[:, 0].tolist()))


def categorical_from_counts(plan: FeaturePlan, rows: int, count: int, counts: Counter) -> FittedFeature:
    """A categorical or binary feature from its training split's value counts ("" counts the missing
    ones): what the in-memory fit and data.stream's pass both end with."""
    present = Counter({v: c for v, c in counts.items() if v != ""})
    fill = None
    counted = counts
    if plan.missing == "most_frequent":
        fill = min(present, key=lambda v: (-present[v], v))
        counted = present  # a missing value becomes the most frequent: no category of its own
    elif plan.missing not in ("auto", "category"):
        counted = present
    if plan.type == "binary":
        vocabulary = sorted(present)
        if len(vocabulary) > 2:
            shown = ", ".join(map(repr, vocabulary[:5]))
            raise DataError(f"data.train: column {plan.name!r} is binary but holds {len(vocabulary)} distinct values "
                            f"({shown}…)", hint="declare it categorical")
        summary = {"values": vocabulary, "positive": vocabulary[-1]}
        return FittedFeature(plan, rows, count, fill=fill, vocabulary=vocabulary,
                             indicator=plan.missing in ("auto", "category") and count > 0, summary=summary)
    vocabulary = ranked_vocabulary(counted, plan.options.get("min_frequency") or 1, plan.options.get("max_tokens"))
    if not vocabulary:
        raise DataError(f"data.train: column {plan.name!r}: no value is seen min_frequency "
                        f"({plan.options.get('min_frequency')}) times in the training split",
                        hint="lower the feature's min_frequency")
    top = [{"value": v, "rows": counted[v]} for v in vocabulary[:3]]
    kept = set(vocabulary)
    summary = {"distinct": len(present), "top": top,
               "out_of_vocabulary_rows": int(sum(c for v, c in counted.items() if v not in kept))}
    return FittedFeature(plan, rows, count, fill=fill, vocabulary=vocabulary, summary=summary)


def ranked_vocabulary(counts: Counter, min_frequency: int, max_tokens: int | None) -> list[str]:
    """Values seen at least min_frequency times, by frequency then value, at most max_tokens."""
    kept = sorted((v for v, c in counts.items() if c >= min_frequency), key=lambda v: (-counts[v], v))
    return kept[:max_tokens] if max_tokens else kept


def _text(plan: FeaturePlan, values: np.ndarray, normalize: str) -> FittedFeature:
    _, count = _missing_summary(plan, values)
    tally = TextTally()
    tally.add(tokenize(values[:, 0]))
    return tally.fitted(plan, len(values), count)


class TextTally:
    """A text column's token counts, document counts and lengths, added to document by document (the
    in-memory fit adds every document at once, data.stream's pass chunk by chunk)."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.document_counts: Counter = Counter()
        self.lengths: Counter = Counter()
        self.documents = 0

    def add(self, documents: list[list[str]]) -> None:
        for tokens in documents:
            self.counts.update(tokens)
            self.document_counts.update(set(tokens))
            self.lengths[len(tokens)] += 1
        self.documents += len(documents)

    def fitted(self, plan: FeaturePlan, rows: int, count: int) -> FittedFeature:
        vocabulary = ranked_vocabulary(self.counts, plan.options.get("min_frequency") or 1,
                                       plan.options.get("max_tokens") or TEXT_MAX_TOKENS)
        if not vocabulary:
            raise DataError(f"data.train: text column {plan.name!r}: no token is kept in the training split",
                            hint="lower the feature's min_frequency, or check the column holds words")
        idf = None
        if (plan.options.get("output") or "tf_idf") == "tf_idf":
            # Keras's own formula (IndexLookup's inverse document frequency).
            idf = [math.log(1 + self.documents / (1 + self.document_counts[t])) for t in vocabulary]
        summary = {"tokens": len(vocabulary), "median_words": counted_median(self.lengths), "top": vocabulary[:3]}
        return FittedFeature(plan, rows, count, vocabulary=vocabulary, idf=idf, summary=summary)


def counted_median(counts) -> float:
    """The median of values given as {value: how many times}, as np.median computes it (the mean of
    the two middle values when their number is even)."""
    values = sorted(counts)
    cumulative = np.cumsum([counts[v] for v in values])
    total = int(cumulative[-1])
    low = values[int(np.searchsorted(cumulative, (total - 1) // 2, side="right"))]
    high = values[int(np.searchsorted(cumulative, total // 2, side="right"))]
    return float((low + high) / 2)


def tokenize(texts: np.ndarray) -> list[list[str]]:
    """Each text's tokens as TextVectorization makes them (TensorFlow's string ops, the same ones)."""
    import tensorflow as tf  # deferred: imports TensorFlow (only a run with a text feature gets here)

    standardized = tf.strings.regex_replace(tf.strings.lower(tf.constant(list(texts), tf.string)),
                                            KERAS_PUNCTUATION, "")
    ragged = tf.strings.split(standardized)
    return [[token.decode("utf-8") for token in row] for row in ragged.to_list()]


_FIT = {"numeric": _numeric, "date": _date, "categorical": _categorical, "binary": _categorical, "text": _text}
