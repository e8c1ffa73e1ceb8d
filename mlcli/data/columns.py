"""Which columns of a table are read, and as what: the one place the header rules live.

Every reader hands over a file's header and gets back a ColumnPlan — the features in model input
order, the label columns, the --keep columns, and the columns nothing reads — or a DataError that
names the file, lists its columns and, when a name is close to one of them, asks "did you mean".

Two plans, one per question:
- `training_columns`: the config's data.label and data.features (default: every other column),
  for the in-memory reader (mlcli.data.frames) and data.stream (mlcli.data.stream_source).
- `model_columns`: a trained model's features, in its input order, and the labels `evaluate` needs,
  for evaluate and predict (mlcli.data.inputs).
"""

from __future__ import annotations

import collections
import difflib
from dataclasses import dataclass, field

from mlcli.data.formats.csv import delimiter_hint
from mlcli.errors import ConfigError, ConfigProblem, DataError


@dataclass(frozen=True)
class ColumnPlan:
    features: list[str]  # in model input order
    labels: list[str]
    keep: list[str] = field(default_factory=list)  # predict --keep: copied to the output as written
    extra: list[str] = field(default_factory=list)  # in the file, read by nothing

    @property
    def needed(self) -> list[str]:
        """Every column to read, each once."""
        return list(dict.fromkeys([*self.features, *self.labels, *self.keep]))


def check_header(columns: list[str], where: str) -> None:
    """`where` ("data.train: x.csv") starts every message."""
    duplicated = sorted(c for c, n in collections.Counter(columns).items() if n > 1)
    if duplicated:
        raise DataError(f"{where}: column(s) {', '.join(duplicated)} appear twice in the header")


def training_columns(columns: list[str], where: str, *, labels: list[str],
                     features: list[str] | str | None, exclude: list[str] = ()) -> ColumnPlan:
    """data.label must be there; data.features too, or (None) every column that is neither a label
    nor in data.exclude."""
    missing_labels = [c for c in labels if c not in columns]
    if missing_labels:
        raise DataError(f"{where}: label column {missing_labels[0]!r} not found — the columns are: "
                        f"{listing(columns)}{column_hint(missing_labels[0], columns)}; set data.label to the right one")
    unknown = [c for c in exclude if c not in columns]
    if unknown:
        raise DataError(f"{where}: data.exclude names {unknown[0]!r}, which is not a column — the columns are: "
                        f"{listing(columns)}{column_hint(unknown[0], columns)}")
    if features is None:
        names = [c for c in columns if c not in labels and c not in exclude]
    else:
        names = [features] if isinstance(features, str) else list(features)
        missing = [c for c in names if c not in columns]
        if missing:
            raise DataError(f"{where}: feature column(s) {', '.join(map(repr, missing))} not found — the columns "
                            f"are: {listing(columns)}{column_hint(missing[0], columns)}")
    check_features_are_not_labels(names, labels, where)
    if not names:
        raise DataError(f"{where}: no feature columns — the file holds only the label column(s)")
    return _plan(columns, names, list(labels), [])


def model_columns(columns: list[str], where: str, *, features: list[str] | None, width: int,
                  labels: list[str], keep: list[str]) -> ColumnPlan:
    """A trained model's `features` (None: a standalone .keras file, which records no names, so every
    column but the label and --keep ones, by position; `width` values in all), `labels` (evaluate) and
    --keep columns."""
    names = _model_features(columns, where, features, width, labels, keep)
    check_features_are_not_labels(names, labels, where)
    missing = [c for c in names if c not in columns]
    if missing:
        raise DataError(
            f"{where}: feature column(s) {', '.join(map(repr, missing[:10]))}"
            f"{f' (and {len(missing) - 10} more)' if len(missing) > 10 else ''} not found — the model needs "
            f"{listing(names)}; the columns are: {listing(columns)}"
        )
    missing_labels = [c for c in labels if c not in columns]
    if missing_labels:
        raise DataError(
            f"{where}: label column {missing_labels[0]!r} not found — the columns are: {listing(columns)}; "
            "evaluate needs the true labels (the run's data.label)"
        )
    missing_keep = [c for c in keep if c not in columns]
    if missing_keep:
        raise DataError(f"{where}: --keep column {missing_keep[0]!r} not found — "
                        f"the columns are: {listing(columns)}")
    return _plan(columns, names, list(labels), list(keep))


def _model_features(columns: list[str], where: str, features: list[str] | None, width: int, labels: list[str],
                    keep: list[str]) -> list[str]:
    if features is None:  # a standalone .keras file: every other column, in file order, but `label`
        chosen = [c for c in columns if c not in (*labels, "label", *keep)]
        if len(chosen) != width:
            raise DataError(
                f"{where}: the model takes {width} feature(s) but there are {len(chosen)} column(s) besides "
                f"'label' and --keep ({listing(chosen)}) — a .keras file outside its run directory records no "
                "feature names, so give exactly its features, in training order"
            )
        return chosen
    if len(features) == 1 and width > 1 and features[0] not in columns:
        # A run trained on an .npz array `x`: as a table, its features are columns x_0, x_1, ...
        return [f"{features[0]}_{i}" for i in range(width)]
    return list(features)


def label_role(labels: list[str]) -> str:
    """How a message names one of `labels`: the label, or one of several regression targets."""
    return "the label" if len(labels) == 1 else "one of the regression targets"


def check_features_are_not_labels(features: list[str], labels: list[str], where: str) -> None:
    """A column (or .npz array) that is both an input and a target lets the model read the answer it
    is asked to predict: it trains to a perfect score and is useless on new data. Exit 2."""
    both = [name for name in features if name in labels]
    if both:
        raise ConfigError(ConfigProblem(
            "data.features", f"{where}: {both[0]!r} is {label_role(labels)} (data.label), so it cannot also be a "
            "feature — list data.features without it"))


def _plan(columns: list[str], features: list[str], labels: list[str], keep: list[str]) -> ColumnPlan:
    used = {*features, *labels, *keep}
    return ColumnPlan(features, labels, keep, [c for c in columns if c not in used])


def column_hint(name: str, columns: list[str]) -> str:
    """Why a column may be missing: the file is not comma-separated, or the name is spelt differently."""
    if len(columns) == 1:
        hint = delimiter_hint(columns[0])
        if hint:
            return f" ({hint})"
    near = [c for c in columns if c.strip().lower() == name.strip().lower()]
    near = near or difflib.get_close_matches(name, columns, n=1, cutoff=0.8)
    return f"; did you mean {near[0]!r}?" if near else ""


def listing(columns: list[str], limit: int = 12) -> str:
    shown = ", ".join(columns[:limit])
    return shown + (f", … ({len(columns)} in all)" if len(columns) > limit else "")
