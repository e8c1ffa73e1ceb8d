"""Typed feature columns: each feature's type (declared in data.features, or inferred from the training
file), the missing-value policy it follows, and whether a run takes the typed path at all.

The typed path is taken when any feature is declared as a mapping, when data.missing asks to fill
or drop, or when an inferred type is not a number. A table of numbers only, with no feature declared,
keeps the plain float path (one float32 matrix, one Normalization layer): today's model exactly.

Inference rules (for a feature without a declared type), on the column as the training file holds it:

- true/false values (Arrow bool) -> binary
- numbers -> numeric
- dates (a CSV's ISO dates, which Arrow reads as dates; Parquet dates and timestamps; text that is
  every time an ISO date) -> date
- text where at least NUMBER_SHARE of the values are numbers -> numeric: a few stray words in a
  column of numbers are a data error to fix (exit 3 naming the row), not categories
- text with more than FEW_VALUES distinct values whose values have, at the median, at least
  TEXT_MIN_WORDS words -> text: sentences, not labels
- any other text -> categorical (one or two words per value, or few distinct values); when nearly
  every row has its own value (more than ID_SHARE of the rows), a note says it looks like an identifier
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from mlcli.config.schema import OPTIONS, POLICIES, DataConfig
from mlcli.data.values import number_kind
from mlcli.errors import ConfigError, ConfigProblem, DataError

NUMBER_SHARE = 0.95  # a text column this much numbers is a numeric column with bad values
FEW_VALUES = 20  # up to this many distinct values, text is always categorical (even "Bank transfer (automatic)")
TEXT_MIN_WORDS = 3  # median words per value from which a many-valued column is free text
ID_SHARE = 0.5  # a categorical column with more distinct values than this share of rows looks like an id

_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")
# What a missing policy means when a feature cannot follow data.missing's (e.g. median for text).
_FALLBACK = "auto"


@dataclass(frozen=True)
class FeaturePlan:
    """One feature as a run reads it, decided before any statistics are fitted."""

    name: str
    type: str  # numeric | categorical | binary | text | date
    inferred: bool
    missing: str  # the policy it follows
    kind: str  # how the training file held it: bool | int | float | str | date (how values become text)
    options: dict = field(default_factory=dict)  # the declared encoding options
    notes: tuple[str, ...] = ()

    def record(self) -> dict:
        """As run.json and the model's mlcli.json keep it: enough to read a table the way training did."""
        return {"name": self.name, "type": self.type, "inferred": self.inferred, "missing": self.missing,
                "kind": self.kind, "options": dict(self.options)}

    @classmethod
    def from_record(cls, record: dict) -> "FeaturePlan":
        return cls(record["name"], record["type"], bool(record.get("inferred")), record.get("missing", _FALLBACK),
                   record.get("kind", "str"), dict(record.get("options") or {}))


def plan_features(table, names: list[str], data: DataConfig, where: str) -> list[FeaturePlan] | None:
    """Every feature's plan, or None when the run keeps the plain float path."""
    specs = data.feature_specs()
    plans = [_plan(table.column(name), name, specs.get(name), data, where) for name in names]
    plain = (not specs and data.missing in ("auto", "error")
             and all(p.type == "numeric" or (p.type == "binary" and p.kind == "bool") for p in plans))
    return None if plain else plans


def _plan(column, name: str, spec, data: DataConfig, where: str) -> FeaturePlan:
    kind = value_kind(column, name, where)
    declared = spec.type if spec is not None else None
    notes: tuple[str, ...] = ()
    if declared is None:
        feature_type, note = infer_type(column, kind, name, where)
        notes = (note,) if note else ()
    else:
        check_declared(column, kind, declared, name, where)
        feature_type = declared
    missing = spec.missing if spec is not None and spec.missing is not None else None
    if missing is not None and missing not in POLICIES[feature_type]:
        # The schema checks a declared type's policy; here the type was inferred.
        raise ConfigError(ConfigProblem("data.features", f"column {name!r} was inferred {feature_type}, which cannot "
                                        f"use missing: {missing}", where),
                          hint=f"expected one of {', '.join(POLICIES[feature_type])}, or declare its type")
    if missing is None:
        missing = data.missing if data.missing in POLICIES[feature_type] else _FALLBACK
        if data.missing != missing:
            notes += (f"data.missing: {data.missing} does not apply to a {feature_type} column: it follows auto",)
    if spec is not None and declared is None:
        _check_options(spec, feature_type, name, where)
    return FeaturePlan(name, feature_type, declared is None, missing, kind, spec.options() if spec else {}, notes)


def _check_options(spec, feature_type: str, name: str, where: str) -> None:
    for option in spec.options():
        if feature_type not in OPTIONS[option]:
            raise ConfigError(ConfigProblem("data.features", f"column {name!r} was inferred {feature_type}, but {option} "
                                            f"applies to {' and '.join(OPTIONS[option])} features", where),
                              hint="declare its type, or remove the option")


def value_kind(column, name: str, where: str) -> str:
    """bool | int | float | date | str: what the file's values are (a CSV column as Arrow inferred it)."""
    import pyarrow as pa  # deferred: imports pyarrow

    kind = column.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if number_kind(kind) is not None:
        return number_kind(kind)
    if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
        return "date"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return "str"
    raise DataError(f"{where}: column {name!r} holds {kind} values, which mlcli cannot use as a feature",
                    hint="exclude the column (data.exclude), or save it as text or numbers")


def infer_type(column, kind: str, name: str, where: str) -> tuple[str, str | None]:
    """(type, a note for the feature table or None), by the rules in the module docstring."""
    if kind == "bool":
        return "binary", None
    if kind in ("int", "float"):
        return "numeric", None
    if kind == "date":
        return "date", None
    values = _present_text(column)
    if len(values) == 0:
        raise DataError(f"{where}: column {name!r} has no value in any row",
                        hint="exclude it (data.exclude), or list data.features without it")
    if _number_share(values) >= NUMBER_SHARE:
        return "numeric", None
    if all(ISO_DATE.match(v) for v in set(values)):
        return "date", None
    distinct = len(_distinct(values))
    if distinct > FEW_VALUES and _median_words(values) >= TEXT_MIN_WORDS:
        return "text", None
    if len(values) >= 20 and distinct > ID_SHARE * len(values):
        return "categorical", (f"{distinct:,} distinct values in {len(values):,} rows: an identifier? "
                               "data.exclude it, or declare it text")
    return "categorical", None


def check_declared(column, kind: str, declared: str, name: str, where: str) -> None:
    """A declared type the column cannot hold is a data error, said before any row is converted."""
    what = {"bool": "true/false values", "int": "integers", "float": "numbers", "date": "dates"}.get(kind)
    fix = "declare the type its values have, or leave the type out to have it inferred"
    if declared == "numeric" and kind == "str":
        values = _present_text(column)
        share = _number_share(values) if len(values) else 1.0
        if share < NUMBER_SHARE:
            example = next(v for v in values if not re.match(_NUMBER, v))
            raise DataError(f"{where}: column {name!r} is declared numeric, but only {share:.0%} of its values are "
                            f"numbers (e.g. {example!r})",
                            hint="declare it categorical (few distinct values) or text (free text)")
    elif declared == "numeric" and kind == "date":
        raise DataError(f"{where}: column {name!r} is declared numeric but holds dates", hint="declare it date")
    elif declared == "text" and kind != "str":
        raise DataError(f"{where}: column {name!r} is declared text but holds {what}", hint=fix)
    elif declared == "date" and kind in ("bool", "int", "float"):
        raise DataError(f"{where}: column {name!r} is declared date but holds {what} — dates are read from text "
                        "such as 2024-01-31 (or in the feature's format:)", hint=fix)
    elif declared == "binary":
        distinct = _distinct(_present_text(column)) if kind != "bool" else []
        if len(distinct) > 2:
            shown = ", ".join(map(repr, distinct[:5])) + (", …" if len(distinct) > 5 else "")
            raise DataError(f"{where}: column {name!r} is declared binary but holds {len(distinct)} distinct values "
                            f"({shown})", hint="declare it categorical")


# ---- the column's text, for the rules ----------------------------------------------------------

def _present_text(column) -> list[str]:
    """The column's values as stripped text, missing and blank ones left out."""
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.compute as pc  # deferred: imports pyarrow

    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_null(column.type):
        return []
    text = pc.utf8_trim_whitespace(pc.cast(column, pa.string()))
    text = pc.filter(text, pc.and_(pc.is_valid(text), pc.not_equal(text, "")))
    return text.to_pylist()


def _distinct(values: list[str]) -> list[str]:
    return sorted(set(values))


def _number_share(values: list[str]) -> float:
    import pyarrow as pa  # deferred: imports pyarrow
    import pyarrow.compute as pc  # deferred: imports pyarrow

    matches = pc.match_substring_regex(pa.array(values, pa.string()), _NUMBER)
    return pc.sum(matches).as_py() / len(values)


def _median_words(values: list[str]) -> float:
    return float(np.median([len(v.split()) for v in values]))
