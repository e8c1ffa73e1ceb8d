"""The options several commands share, each declared once, and the metric gates they take.

Each option is a function returning a fresh `typer.Option`; `help=` is there for a command that words
the same flag for its own case (`doctor --json` has no human output to move to stderr).
"""

from __future__ import annotations

from typing import Any

import typer

from mlcli.errors import GateFailed, UsageError

_JSON_HELP = "One JSON document on stdout; human output on stderr."
_VERBOSE_HELP = "Show TensorFlow's own log lines."


def set_option() -> Any:
    return typer.Option(
        None, "--set", metavar="KEY=VALUE",
        help="Override a config key: dotted path, YAML-typed value (e.g. training.epochs=3).",
    )


def unsafe_option() -> Any:
    return typer.Option(
        False, "--unsafe",
        help="Let Keras run Python code stored in a model file (a Lambda layer); only for files you trust.",
    )


def output_option(help: str = "Run directory (default runs/<name>).") -> Any:
    return typer.Option(None, "--output", "-o", help=help)


def resume_option() -> Any:
    return typer.Option(False, "--resume", help="Continue an unfinished run (idempotent).")


def force_option(help: str = "Replace a run already in --output.") -> Any:
    return typer.Option(False, "--force", help=help)


def device_option() -> Any:
    return typer.Option(None, "--device", help="auto | cpu | gpu | gpu:0,1 | cpu:N (N logical CPUs)")


def seed_option() -> Any:
    return typer.Option(None, "--seed", help="Override the config's seed.")


def progress_every_option() -> Any:
    return typer.Option(
        None, "--progress-every", metavar="SECONDS", min=0.1,
        help="When stderr is not a terminal (CI logs), a plain progress line at least every SECONDS.",
    )


def json_option(help: str = _JSON_HELP) -> Any:
    return typer.Option(False, "--json", help=help)


def quiet_option() -> Any:
    return typer.Option(False, "--quiet", "-q", help="Nothing on stderr but errors.")


def verbose_option(help: str = _VERBOSE_HELP) -> Any:
    return typer.Option(False, "--verbose", "-v", help=help)


def fail_under_option(help: str = "Exit 5 if METRIC ends below VALUE.") -> Any:
    return typer.Option(None, "--fail-under", metavar="METRIC=VALUE", help=help)


def fail_over_option(help: str = "Exit 5 if METRIC ends above VALUE.") -> Any:
    return typer.Option(None, "--fail-over", metavar="METRIC=VALUE", help=help)


def parse_gates(values: list[str] | None, flag: str) -> dict[str, float]:
    """--fail-under / --fail-over METRIC=VALUE items -> {metric: threshold}; a malformed one is exit 2."""
    gates: dict[str, float] = {}
    for item in values or []:
        name, sep, text = item.partition("=")
        try:
            threshold = float(text)
        except ValueError:
            threshold = None
        if not sep or not name or threshold is None:
            raise UsageError(f"{flag} {item!r}: expected METRIC=NUMBER, e.g. {flag} accuracy=0.9")
        gates[name.strip()] = threshold
    return gates


def check_gates(metrics: dict, under: dict[str, float], over: dict[str, float]) -> None:
    """Exit 5 (GateFailed) naming every metric past its threshold; a metric the run lacks fails too."""
    failed = []
    for name, threshold in under.items():
        value = metrics.get(name)
        if value is None or value < threshold:
            failed.append(f"{name} = {value if value is not None else 'missing'} is below {threshold}")
    for name, threshold in over.items():
        value = metrics.get(name)
        if value is None or value > threshold:
            failed.append(f"{name} = {value if value is not None else 'missing'} is above {threshold}")
    if failed:
        raise GateFailed("; ".join(failed) + " (everything was saved)")
