"""The feature table `train` and `validate --deep` print for typed features: each column's type (and
whether it was inferred), its missing values in the training split and what is done with them, and
what it learned there (statistics, or the vocabulary's size and encoding)."""

from __future__ import annotations

from rich import box
from rich.table import Table

from mlcli import console
from mlcli.data.fit_features import FittedFeature


def show_features(fitted: list[FittedFeature], title: str = "features") -> None:
    """The table on stderr (nothing with --quiet); its notes below it."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    table.add_column("column", overflow="fold")  # never cut short: it is what data.features names
    table.add_column("type", no_wrap=True)
    table.add_column("missing")
    table.add_column("learned (training split)", min_width=24)
    for feature in fitted:
        table.add_row(feature.name, type_text(feature), missing_text(feature), learned_text(feature))
    console.show(table)
    for feature in fitted:
        for note in feature.plan.notes:
            console.info(f"note: {feature.name}: {note}")


def type_text(feature: FittedFeature) -> str:
    return f"{feature.plan.type} ({'inferred' if feature.plan.inferred else 'declared'})"


def missing_text(feature: FittedFeature) -> str:
    policy = feature.plan.missing
    count = feature.missing_count
    if count == 0:
        return f"0 ({policy})"
    what = {
        "drop": "rows dropped",
        "error": "",
        "category": "own category",
        "most_frequent": f"-> {_short(feature.fill)}",
        "median": f"-> median {_short(feature.fill)}",
        "mean": f"-> mean {_short(feature.fill)}",
    }.get(policy, _auto_text(feature))
    return f"{count:,}: {what}"


def _auto_text(feature: FittedFeature) -> str:
    kind = feature.plan.type
    if kind in ("numeric", "date"):
        return f"-> median {_short(feature.fill)} + was-missing"
    if kind == "binary":
        return "-> 0.5 + was-missing"
    if kind == "categorical":
        return "own category"
    return "empty text"


def learned_text(feature: FittedFeature) -> str:
    s = feature.summary
    plan = feature.plan
    scaled = "" if feature.normalize in ("none", "standard") else f", {feature.normalize}"
    if plan.type == "numeric":
        return f"mean {_short(s['mean'])} ± {_short(s['std'])}, {_short(s['min'])}..{_short(s['max'])}{scaled}"
    if plan.type == "date":
        return f"{s['first']}..{s['last']}{scaled}"
    if plan.type == "binary":
        return f"{s['values'][0]} 0, {s['values'][-1]} 1"
    if plan.type == "categorical":
        how = "embedded" if plan.options.get("encoding") == "embedding" else "one-hot"
        top = ", ".join(f"{t['value'] or '(missing)'}" for t in s["top"])
        return f"{len(feature.vocabulary):,} values, {how} ({top}{', …' if len(feature.vocabulary) > 3 else ''})"
    return f"{len(feature.vocabulary):,} tokens, {plan.options.get('output') or 'tf_idf'}"


def _short(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return repr(value) if isinstance(value, str) else str(value)
