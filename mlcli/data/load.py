"""The data a run trains on: the config's files loaded into memory, or streamed from disk in chunks.

data.stream: auto decides from what the files declare (their data once decompressed, counted by
mlcli.data.formats), not from their size on disk: it streams when data.train holds more than
STREAM_ABOVE_BYTES, or when reading every split whole would need more memory than there is
(mlcli.limits). A file read whole that would not fit (data.stream: false, an .npz file) is exit 3
naming it, when its reader checks what it declares.
"""

from __future__ import annotations

from mlcli import limits
from mlcli.config.schema import Config, DataConfig
from mlcli.data.feature_types import FeaturePlan
from mlcli.data.prepare import Prepared, prepare
from mlcli.data.sources import Source, resolve
from mlcli.data.stream_scan import prepare_stream
from mlcli.errors import ConfigError, ConfigProblem

STREAM_ABOVE_BYTES = 1 << 30  # data.stream: auto


def should_stream(config: Config) -> tuple[bool, str | None]:
    """(stream?, why, when auto decided it)."""
    stream = config.data.stream
    if stream is not True and stream is not False:
        return _auto(config.data)
    return stream, None


def prepare_data(config: Config, vocabulary: list | None = None, plans: list[FeaturePlan] | None = None,
                 typed: bool = True) -> Prepared:
    """The splits a run trains on: in memory (mlcli.data.prepare), or streamed from disk. `plans` and
    `typed` fix the feature types (mlcli.data.prepare.read_train)."""
    if config.data.image is not None:
        from mlcli.data.image_prepare import prepare_images  # deferred: imports TensorFlow (decoding)

        return prepare_images(config, vocabulary)
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


def _auto(data: DataConfig) -> tuple[bool, str | None]:
    if data.image is not None:  # images: mlcli.data.image_prepare decides
        return False, None
    train = resolve(data.train, "data.train")
    if not train.format_module.TABULAR:  # an .npz is never streamed (its reader refuses one too large)
        return False, None
    limit, source = limits.memory_limit()
    # A gzip file is counted by decompressing it: no further than the figures this decision needs.
    up_to = STREAM_ABOVE_BYTES if limit is None else min(STREAM_ABOVE_BYTES, limit)
    held = _declared(train, "data.train", up_to)
    whole = held
    for spec, role in ((data.validation, "data.validation"), (data.test, "data.test")):
        if isinstance(spec, str):
            whole = whole + _declared(resolve(spec, role), role, up_to)
    if held.data > STREAM_ABOVE_BYTES:
        why = f"data.train holds {held.text()} of data (more than 1 GiB)"
    elif limit is not None and whole.need > limit:
        why = (f"reading the data whole would need about {limits.size_text(whole.need)}, more than "
               f"{limits.memory_text(limit, source)}")
    else:
        return False, None
    return True, f"{why}: streaming it from disk in chunks (data.stream: auto; set data.stream: false to load it into memory)"


def _declared(source: Source, role: str, up_to: int) -> limits.Declared:
    total = limits.Declared(0, 0)
    for path in source.paths:
        total = total + source.format_module.declared(path, role, up_to)
    return total
