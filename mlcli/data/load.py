"""The data a run trains on: the config's files loaded into memory, or streamed from disk in chunks."""

from __future__ import annotations

from mlcli.config.schema import Config
from mlcli.data.feature_types import FeaturePlan
from mlcli.data.prepare import Prepared, prepare
from mlcli.data.sources import resolve
from mlcli.data.stream_scan import prepare_stream
from mlcli.errors import ConfigError, ConfigProblem

STREAM_ABOVE_BYTES = 1 << 30  # data.stream: auto


def should_stream(config: Config) -> tuple[bool, str | None]:
    """(stream?, why, when auto decided it)."""
    stream = config.data.stream
    if stream is False:
        return False, None
    if stream is True:
        return True, None
    source = resolve(config.data.train, "data.train")
    size = sum(p.stat().st_size for p in source.paths)
    if not source.format_module.TABULAR or size <= STREAM_ABOVE_BYTES:  # an .npz is never streamed
        return False, None
    return True, (f"data.train is {size / (1 << 30):.1f} GiB on disk (more than 1 GiB): streaming it from disk in "
                  "chunks (data.stream: auto; set data.stream: false to load it into memory)")


def prepare_data(config: Config, vocabulary: list | None = None, plans: list[FeaturePlan] | None = None,
                 typed: bool = True) -> Prepared:
    """The splits a run trains on: in memory (mlcli.data.prepare), or streamed from disk. `plans` and
    `typed` fix the feature types (mlcli.data.prepare.read_train)."""
    stream, why = should_stream(config)
    if not stream:
        return prepare(config, vocabulary, plans, typed)
    # data.stream: true with declared types is refused by the config checks; here data.stream: auto
    # chose to stream a large file, or a setting only the typed path follows is on.
    if plans is not None or config.data.feature_specs() or config.data.missing not in ("auto", "error"):
        raise ConfigError(ConfigProblem("data.stream", "typed features (declared types, data.missing filling or "
                                        "dropping values, or a typed parent model) are not supported with data.stream "
                                        "yet" + (f" — {why}" if why else ""), f"data.train: {config.data.train}"),
                          hint="set data.stream: false to load the table into memory")
    if config.data.missing_label != "error":
        raise ConfigError(ConfigProblem("data.missing_label", "drop is not supported with data.stream yet",
                                        f"data.train: {config.data.train}"),
                          hint="set data.stream: false, or drop the rows without a label from the files")
    prepared = prepare_stream(config, vocabulary)
    if why:
        prepared.train.notes.append(why)
    return prepared
