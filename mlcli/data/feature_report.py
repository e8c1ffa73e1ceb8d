"""The feature table `train` and `validate --deep` print for typed features: each column's type (and
whether it was inferred), its missing values and what is done with them, and what it learned."""

from __future__ import annotations

from rich import box
from rich.table import Table

from mlcli import console
from mlcli.data.fit_features import FittedFeature


def show_features(fitted: list[FittedFeature], title: str = "features") -> None:
    """The table on stderr (nothing with --quiet); its notes below it."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for column, justify in (("column", "left"), ("type", "left"), ("missing", "left"), ("learned", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for feature in fitted:
        table.add_row(feature.name, type_text(feature), missing_text(feature), learned_text(feature))
    console.show(table)
    for feature in fitted:
        for note in feature.plan.notes:
            console.info(f"note: {feature.name}: {note}")


def type_text(feature: FittedFeature) -> str:
    plan = feature.plan
    encoding = ""
    if plan.type == "categorical":
        encoding = ", embedding" if plan.options.get("encoding") == "embedding" else ", one-hot"
    elif plan.type == "text":
        encoding = f", {plan.options.get('output') or 'tf_idf'}"
    return f"{plan.type}{encoding} ({'inferred' if plan.inferred else 'declared'})"


def missing_text(feature: FittedFeature) -> str:
    policy = feature.plan.missing
    count = feature.missing_count
    if count == 0:
        return f"0 (missing: {policy})"
    what = {
        "drop": "rows dropped",
        "error": "",
        "category": "its own category",
        "most_frequent": f"-> {_short(feature.fill)}",
        "median": f"-> median {_short(feature.fill)}",
        "mean": f"-> mean {_short(feature.fill)}",
    }.get(policy, _auto_text(feature))
    return f"{count:,} of {feature.rows:,}: {what}"


def _auto_text(feature: FittedFeature) -> str:
    kind = feature.plan.type
    if kind in ("numeric", "date"):
        return f"-> median {_short(feature.fill)} + was-missing column"
    if kind == "binary":
        return "-> 0.5 + was-missing column"
    if kind == "categorical":
        return "its own category"
    return "empty text"


def learned_text(feature: FittedFeature) -> str:
    s = feature.summary
    kind = feature.plan.type
    if kind == "numeric":
        text = f"mean {_short(s['mean'])}, std {_short(s['std'])}, range {_short(s['min'])}..{_short(s['max'])}"
        return text + ("" if feature.normalize == "none" else f"; normalize {feature.normalize}")
    if kind == "date":
        return f"{s['first']}..{s['last']} as year, month, day, weekday; normalize {feature.normalize}"
    if kind == "binary":
        return f"{s['values'][0]!r} -> 0, {s['values'][-1]!r} -> 1"
    if kind == "categorical":
        top = ", ".join(f"{t['value'] or '(missing)'} {t['rows']:,}" for t in s["top"])
        return f"{len(feature.vocabulary):,} values + out-of-vocabulary (top: {top})"
    return f"{len(feature.vocabulary):,} tokens (top: {', '.join(s['top'])})"


def _short(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return repr(value) if isinstance(value, str) else str(value)
