"""The typed, frozen config schema (docs/contract.md §3). No TensorFlow here.

Every field carries a description (it becomes the editor hover text through `mlcli schema`) and
every default a short reason. Unknown keys are errors at every depth, except in the sections that
hold Keras arguments (a layer, an optimizer, a schedule, a loss, a metric), whose extra keys are
passed to Keras and checked by `validate --deep` and by train.
"""

from __future__ import annotations

import builtins
import math
import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator, model_validator
from pydantic_core import PydanticCustomError

# The patterns below are written in the subset of regex syntax that Python and JSON Schema (ECMA 262)
# read alike, because `mlcli schema` hands them to editors as they are.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DEVICE = re.compile(r"^(auto|cpu|cpu:[1-9]\d*|gpu|gpu:\d+(,\d+)*)$")
# A run name is one directory name: letters and digits of any script, then also '.', '_' and '-'.
# Spelled as the characters it cannot hold (ASCII spaces, controls and punctuation, C1 controls)
# because ECMA regexes have no Unicode letter class without flags that JSON Schema does not pass.
_NOT_IN_RUN_NAME = r"\s\x00-\x2c\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x9f"
_RUN_NAME = re.compile(f"^[^{_NOT_IN_RUN_NAME}._-][^{_NOT_IN_RUN_NAME}]*$")
SEED_MAX = 2**32 - 1  # numpy's seeds are 32-bit


def run_name_from(stem: str) -> str:
    """A run name for a config file's stem: each run of characters a run name cannot hold becomes '-'
    ("my config" -> "my-config", "a+b" -> "a-b"); letters beyond ASCII stay ("réseau")."""
    if _RUN_NAME.match(stem):
        return stem
    name = re.sub(f"[{_NOT_IN_RUN_NAME}]+", "-", stem).lstrip("._-").rstrip("-")
    return name or "run"


def _pattern(regex: re.Pattern) -> dict:
    """The validator's own pattern, for the JSON Schema (the validator checks it with its own message)."""
    return {"pattern": regex.pattern}


def _reject(message: str) -> PydanticCustomError:
    """A validation error whose message is shown as written (no "Value error," prefix)."""
    return PydanticCustomError("mlcli", message)


class _Section(BaseModel):
    # strict: a YAML string "10" is not silently an integer; frozen: nothing below the CLI edits it.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _type_is_a_name(schema: dict) -> None:
    schema["properties"]["type"].update(_pattern(_NAME))


class _KerasObject(BaseModel):
    """`type` names a Keras class or function; the other keys are its own arguments."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True, json_schema_extra=_type_is_a_name)

    type: str = Field(description="Keras class or function name, e.g. Dense, adam, CosineDecay.")

    @field_validator("type")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        # Names resolve through Keras's registries only; dotted import paths are never followed.
        if not _NAME.match(value):
            raise _reject(f"{value!r} is not a Keras name — expected a plain name such as Dense or adam (import paths are not allowed)")
        return value

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments for the Keras constructor."""
        return dict(self.model_extra or {})


class LayerSpec(_KerasObject):
    """One layer of the Sequential model."""

    type: str = Field(description="Any keras.layers class name: Dense, Dropout, BatchNormalization, ...")


class ScheduleSpec(_KerasObject):
    """A learning-rate schedule from keras.optimizers.schedules."""

    type: str = Field(description="A keras.optimizers.schedules class, e.g. CosineDecay, ExponentialDecay.")


class OptimizerConfig(BaseModel):
    """The optimizer; other keys are its keyword arguments (beta_1, momentum, weight_decay, ...)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    type: str = Field("adam", description="Any keras.optimizers name: adam, sgd, rmsprop, adamw, ...")
    learning_rate: Union[Annotated[float, Field(gt=0)], ScheduleSpec] = Field(
        0.01, description="A number, or a schedule {type: CosineDecay, initial_learning_rate: .., decay_steps: ..}."
    )

    @field_validator("learning_rate", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float, dict)):
            raise _reject(f"got {value!r} — expected a positive number or a schedule mapping with `type`")
        if isinstance(value, (int, float)) and not (value > 0 and math.isfinite(value)):
            raise _reject(f"got {value} — expected a number greater than 0 and finite, e.g. 0.001")
        return float(value) if isinstance(value, int) else value

    def arguments(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LossSpec(_KerasObject):
    """A Keras loss with arguments: {type: Huber, delta: 2.0}."""

    type: str = Field(description="A keras.losses name, e.g. CategoricalCrossentropy, Huber.")


class MetricSpec(_KerasObject):
    """A Keras metric with arguments: {type: AUC, curve: PR}."""

    type: str = Field(description="A keras.metrics name, e.g. AUC, Precision, TopKCategoricalAccuracy.")


# What the `_columns` validator below accepts as a list, said for the JSON Schema.
ColumnList = Annotated[list[str], Field(min_length=1, json_schema_extra={"uniqueItems": True})]

FeatureType = Literal["numeric", "categorical", "binary", "text", "date"]
MissingPolicy = Literal["auto", "error", "drop", "median", "mean", "most_frequent", "category"]

# Which missing-value policies each feature type can follow: a mean of categories, or a category
# "missing" in a column of numbers, has no meaning.
POLICIES: dict[str, tuple[str, ...]] = {
    "numeric": ("auto", "error", "drop", "median", "mean", "most_frequent"),
    "categorical": ("auto", "error", "drop", "most_frequent", "category"),
    "binary": ("auto", "error", "drop", "most_frequent", "category"),
    "text": ("auto", "error", "drop"),
    "date": ("auto", "error", "drop", "median"),
}
# The keys of a feature mapping that only one kind of feature reads.
OPTIONS: dict[str, tuple[str, ...]] = {
    "normalize": ("numeric", "date"),
    "max_tokens": ("categorical", "text"),
    "min_frequency": ("categorical", "text"),
    "encoding": ("categorical",),
    "embedding_dim": ("categorical", "text"),
    "output": ("text",),
    "sequence_length": ("text",),
    "format": ("date",),
}


def _feature_name(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, FeatureSpec):
        return item.name
    name = item.get("name") if isinstance(item, dict) else None
    return name if isinstance(name, str) else None


class FeatureSpec(_Section):
    """One feature column with its type and how it is encoded inside the model."""

    name: str = Field(min_length=1, description="The column.")
    type: Union[FeatureType, None] = Field(
        None, description="numeric | categorical | binary | text | date; null: inferred from the training data."
    )
    missing: Union[MissingPolicy, None] = Field(None, description="This column's missing-value policy; null: data.missing.")
    normalize: Union[Literal["standard", "minmax", "none"], None] = Field(
        None, description="numeric and date: null follows data.normalize."
    )
    max_tokens: Union[int, None] = Field(
        None, ge=1, description="categorical, text: keep at most this many of the most frequent values (text: 20000 "
        "when null); the rest go to the out-of-vocabulary slot."
    )
    min_frequency: Union[int, None] = Field(
        None, ge=1, description="categorical, text: values seen fewer times in the training split go to the "
        "out-of-vocabulary slot (null: 1)."
    )
    encoding: Union[Literal["one_hot", "embedding"], None] = Field(
        None, description="categorical: one_hot (null) or a trained embedding of embedding_dim values."
    )
    embedding_dim: Union[int, None] = Field(
        None, ge=1, description="categorical with encoding: embedding, text with output: sequence (null: "
        "min(50, 1.6 * vocabulary^0.56), the fastai rule of thumb)."
    )
    output: Union[Literal["tf_idf", "multi_hot", "count", "sequence"], None] = Field(
        None, description="text: tf_idf (null), multi_hot, count (bags of words), or sequence (token ids, "
        "embedded and averaged)."
    )
    sequence_length: Union[int, None] = Field(
        None, ge=1, description="text with output: sequence: tokens kept per value (null: 32)."
    )
    format: Union[str, None] = Field(
        None, description="date: a strptime format such as %d/%m/%Y (null: ISO 8601, 2024-01-31)."
    )

    @field_validator("missing")
    @classmethod
    def _policy_fits_the_type(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("type")
        if value is not None and kind is not None and value not in POLICIES[kind]:
            raise _reject(f"missing: {value} cannot apply to a {kind} feature — expected one of "
                          f"{', '.join(POLICIES[kind])}")
        return value

    @field_validator(*OPTIONS)
    @classmethod
    def _option_fits_the_type(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("type")
        readers = OPTIONS[info.field_name]
        if value is not None and kind is not None and kind not in readers:
            raise _reject(f"{info.field_name} applies to {' and '.join(readers)} features, not {kind} — remove it, "
                          f"or declare the type it is meant for")
        return value

    def options(self) -> dict[str, Any]:
        """The declared encoding options (those not left null)."""
        return {key: getattr(self, key) for key in OPTIONS if getattr(self, key) is not None}


class ImageConfig(_Section):
    """Image data (docs/contract.md §7): every image is decoded, converted to `channels` and resized to `size`."""

    size: Annotated[list[Annotated[int, Field(ge=1, le=8192)]], Field(min_length=2, max_length=2)] = Field(
        description="[height, width] every image is resized to, e.g. [224, 224]. Required.",
    )
    channels: Literal[1, 3, 4] = Field(
        3, description="1 (grayscale), 3 (RGB) or 4 (RGBA). Every image is converted to it, whatever it holds "
        "(a grayscale PNG among colour ones becomes RGB), so mixed channel counts are never an error.",
    )
    crop_to_aspect_ratio: bool = Field(
        False, description="true: crop the largest centred window of size's aspect ratio before resizing (no "
        "distortion); false: stretch the whole image to size.",
    )
    path_column: str = Field(
        "path", min_length=1, description="A CSV/Parquet data.train: the column of image paths (relative to the "
        "table's folder); data.label names the label column. Unused for a folder of class subfolders.",
    )


class FoldConfig(_Section):
    """One fold of `mlcli train --folds K`: the run's validation split is this fold of the training rows."""

    index: int = Field(ge=1, description="Which fold (1..of) is held out as this run's validation split.")
    of: int = Field(ge=2, description="How many folds the training rows are cut into (stratified for classification).")


class CsvDialect(_Section):
    """How CSV files are written: every CSV reader (training, streaming, evaluate and predict inputs) follows it."""

    delimiter: str = Field(",", min_length=1, max_length=1, description="The field separator, e.g. ';' or a tab.")
    decimal: Literal[".", ","] = Field(".", description="The decimal mark of numbers: '.' (3.5) or ',' (3,5).")
    encoding: str = Field("utf-8", description="The text encoding, e.g. utf-8, latin-1, cp1252.")

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value: str) -> str:
        if value in ('"', "\n", "\r"):
            raise _reject(f"{value!r} cannot separate fields — expected e.g. ',', ';', '|' or a tab")
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        import codecs  # the standard library's

        try:
            codecs.lookup(value)
        except LookupError:
            raise _reject(f"{value!r} is not a text encoding Python knows — expected e.g. utf-8, latin-1, "
                          "cp1252") from None
        return value

    @model_validator(mode="after")
    def _decimal_is_not_the_delimiter(self) -> "CsvDialect":
        if self.decimal == self.delimiter:
            raise _reject(f"decimal {self.decimal!r} is also the delimiter — a file with decimal commas is "
                             "usually separated by ';' (delimiter: ';')")
        return self


class DataConfig(_Section):
    """Where the data comes from and how it is prepared."""

    train: str = Field(
        description="Path (.csv .parquet .npz; a glob of shards with stream) or builtin:NAME[/SPLIT]. Required.",
    )
    validation: Union[Annotated[float, Field(gt=0, lt=1)], str, None] = Field(
        0.2,
        description="Fraction held out of train (stratified for classification, seeded), a path, or null.",
    )
    test: Union[str, None] = Field(
        None, description="Optional test data; `evaluate` uses it when --data is not given."
    )
    label: Union[str, ColumnList] = Field(
        "label",
        description="Label column; a list for several regression targets; for .npz the array name (default y).",
    )
    features: Union[Annotated[list[Union[str, FeatureSpec]], Field(min_length=1, json_schema_extra={"uniqueItems": True})],
                    str, None] = Field(
        None,
        description="Feature columns, each a bare name (type inferred) or {name, type, ...}; default every other "
        "column. For .npz the array name (default x).",
    )
    exclude: list[str] = Field(
        default_factory=list, description="Columns never used as features (with features: null, e.g. an id column)."
    )
    missing: MissingPolicy = Field(
        "auto",
        description="Default missing-value policy of every feature: auto (numeric: median plus a was-missing "
        "indicator; categorical: its own category; text: empty) | error | drop (the row, counted) | median | mean "
        "| most_frequent | category. A table of numbers only, with no feature declared, keeps the plain float "
        "path, where a gap is an error unless this is set to a filling policy.",
    )
    missing_label: Literal["error", "drop"] = Field(
        "error",
        description="Rows whose label is missing: error (exit 3 naming the row) or drop them (the count is "
        "reported and recorded in run.json).",
    )
    task: Literal["auto", "classification", "regression"] = Field(
        "auto", description="auto: classification for integer/string labels with a classification loss."
    )
    normalize: Literal["standard", "minmax", "none"] = Field(
        "standard",
        description="Fitted on the training split only and saved inside the model, so predict applies it too.",
    )
    label_transform: Literal["none", "standard", "log"] = Field(
        "none",
        description="Regression targets: train on (y - mean) / std of the training split (standard) or on "
        "log(1 + y) (log; every target must be >= 0), undone inside the model, so predictions, evaluate's "
        "metrics (mae, rmse, r2) and exported models are in the original units; the loss is on the "
        "transformed scale. Use standard for targets in the thousands or millions.",
    )
    csv: CsvDialect = Field(
        default_factory=CsvDialect,
        description="CSV dialect of data.train, validation and test, and the default for evaluate and predict "
        "on this run: {delimiter, decimal, encoding}.",
    )
    shuffle: bool = Field(True, description="Reshuffle the training rows every epoch (seeded).")
    stream: Union[bool, Literal["auto"]] = Field(
        "auto",
        description="true: read CSV/Parquet from disk in batches (data larger than memory; globs of shards). "
        "auto: stream when data.train holds more than 1 GiB once decompressed, or the data would not fit in memory (decided from the sizes the files declare). false: load into memory.",
    )
    classes: Union[list[Union[int, str]], None] = Field(
        None,
        description="Keep only rows whose label is one of these (classification), e.g. [0, 1, 2, 3, 4]; "
        "null keeps every row.",
    )
    image: Union[ImageConfig, None] = Field(
        None, description="Image data: {size: [H, W], channels: 3, crop_to_aspect_ratio: false}. data.train (and "
        "test, validation) is then a folder with one subfolder per class, or a CSV/Parquet with an image-path column.",
    )
    augment: list[LayerSpec] = Field(
        default_factory=list,
        description="Image data: Keras augmentation layers applied in training only, e.g. [{type: RandomFlip, "
        "mode: horizontal}, {type: RandomRotation, factor: 0.1}].",
    )
    fold: Union[FoldConfig, None] = Field(
        None, description="Written by `mlcli train --folds K` into each fold's run: {index: i, of: K} — the "
        "validation split is the i-th of K folds of data.train (seeded) instead of a fraction.",
    )

    @field_validator("validation", mode="before")
    @classmethod
    def _validation(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _reject(f"got {value!r} — expected a fraction such as 0.2, a path, or null")
        if not 0 < value < 1:
            raise _reject(f"fraction {value} is outside (0, 1) — expected e.g. 0.2, or null for no validation")
        return float(value)

    @field_validator("label", mode="before")
    @classmethod
    def _columns(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            if len(set(value)) != len(value):
                raise _reject("lists a column twice — name each column once")
            return value
        raise _reject(f"got {value!r} — expected a column name or a non-empty list of column names")

    @field_validator("features", mode="before")
    @classmethod
    def _features(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and value and all(isinstance(v, (str, dict, FeatureSpec)) for v in value):
            names = [_feature_name(v) for v in value]
            twice = [n for n in dict.fromkeys(names) if n is not None and names.count(n) > 1]
            if twice:
                raise _reject(f"lists a column twice ({twice[0]!r}) — name each column once")
            return value
        raise _reject(f"got {value!r} — expected a column name or a non-empty list of column names "
                      "or {name, type, ...} mappings")

    @field_validator("exclude", mode="before")
    @classmethod
    def _exclude(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]  # one column is a list of one
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise _reject(f"got {value!r} — expected a list of column names")
        return value

    def feature_columns(self) -> list[str] | str | None:
        """data.features as column names (a spec by its name); None: every column but the label(s)."""
        if self.features is None or isinstance(self.features, str):
            return self.features
        return [_feature_name(item) for item in self.features]

    def feature_specs(self) -> dict[str, FeatureSpec]:
        """The features declared as mappings, by column name."""
        if not isinstance(self.features, list):
            return {}
        return {item.name: item for item in self.features if isinstance(item, FeatureSpec)}

    def label_columns(self) -> list[str]:
        return [self.label] if isinstance(self.label, str) else list(self.label)


def _seed_layers() -> list[LayerSpec]:
    # The seed network: 64-64-10, relu/relu/softmax.
    return [
        LayerSpec(type="Dense", units=64, activation="relu"),
        LayerSpec(type="Dense", units=64, activation="relu"),
        LayerSpec(type="Dense", units=10, activation="softmax"),
    ]


class BackboneConfig(BaseModel):
    """A pretrained network before model.layers: a keras.applications model by name (`type`), or a KerasHub
    preset (`preset`: a local directory, or a name where downloads work). Other keys are the
    application's own arguments (alpha, minimalistic, ...)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    type: Union[str, None] = Field(
        None, json_schema_extra=_pattern(_NAME),
        description="A keras.applications model name: MobileNetV3Small, ResNet50, EfficientNetB0, ...",
    )
    preset: Union[str, None] = Field(
        None, json_schema_extra={"minLength": 1},
        description="A KerasHub preset directory (image or text), or a preset name (downloaded by KerasHub).",
    )
    weights: Union[str, None] = Field(
        "imagenet",
        description="imagenet (downloaded by Keras into its cache), a local weights file, or null (random "
        "initial weights). keras.applications only; a preset holds its own weights.",
    )
    pooling: Union[Literal["avg", "max"], None] = Field(
        "avg", description="avg or max: one vector per image for model.layers; null: the feature map.",
    )
    sequence_length: Union[Annotated[int, Field(ge=2)], None] = Field(
        None, description="Text presets: tokens per row (default: the preset's own).",
    )

    @field_validator("type")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise _reject(f"{value!r} is not a keras.applications name — expected e.g. MobileNetV3Small")
        return value

    @field_validator("preset")
    @classmethod
    def _preset(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise _reject("is empty — expected a preset directory or name")
        return value

    def arguments(self) -> dict[str, Any]:
        """The other keyword arguments for the keras.applications constructor."""
        return dict(self.model_extra or {})

    def given(self, key: str) -> bool:
        """Whether the config wrote `key` (a default is not written)."""
        return key in self.model_fields_set


class ModelConfig(_Section):
    """A Keras Sequential; the input shape is taken from the data."""

    backbone: Union[BackboneConfig, None] = Field(
        None, description="A pretrained network before model.layers: {type: MobileNetV3Small, weights: imagenet, "
        "pooling: avg} or {preset: DIR}.",
    )
    layers: list[LayerSpec] = Field(
        default_factory=_seed_layers,
        min_length=1,
        description="Layers in order; `type` is any keras.layers class, other keys its arguments.",
    )


class EarlyStoppingConfig(_Section):
    """keras.callbacks.EarlyStopping."""

    monitor: str = Field("val_loss", description="Metric to watch, e.g. val_loss or val_accuracy.")
    patience: int = Field(3, ge=0, description="Epochs without improvement before stopping.")
    restore_best_weights: bool = Field(True, description="Keep the best epoch's weights in model.keras.")
    min_delta: float = Field(0.0, ge=0, allow_inf_nan=False, description="Smallest change that counts as an improvement.")
    mode: Literal["auto", "min", "max"] = Field(
        "auto", description="auto: max for accuracy/auc-like metrics, min otherwise (Keras's rule)."
    )


class CheckpointConfig(_Section):
    """Which epoch is kept as best.keras (when there is validation data)."""

    monitor: str = Field("val_loss", description="Metric that decides the best epoch.")
    mode: Literal["auto", "min", "max"] = Field(
        "auto", description="min, max, or auto (max for accuracy/auc-like metrics, min otherwise)."
    )


class TrainingConfig(_Section):
    """The training run."""

    epochs: int = Field(10, ge=1, description="Number of passes over the training data.")
    batch_size: int = Field(
        32, ge=1, description="Global batch size (split across replicas under a distribution strategy)."
    )
    early_stopping: Union[EarlyStoppingConfig, None] = Field(
        None, description="null, or {monitor: val_loss, patience: 3, restore_best_weights: true}."
    )
    checkpoint: CheckpointConfig = Field(
        default_factory=lambda: CheckpointConfig(monitor="val_loss", mode="min"),
        description="best.keras is the best epoch by this monitor (when there is validation data).",
    )
    checkpoint_every_steps: Union[int, None] = Field(
        None, ge=1, description="Also save resume state every N steps (it is always saved at each epoch end)."
    )
    class_weight: Union[Literal["balanced"], dict[Union[int, str], float], None] = Field(
        None,
        description="Weight of each class in the loss: null (equal), balanced (rows / (classes * rows of the "
        "class), from the training split), or {label: weight, ...} (labels not listed weigh 1).",
    )
    steps_per_execution: Union[Annotated[int, Field(ge=1)], Literal["auto"]] = Field(
        "auto",
        description="Optimizer steps per TensorFlow call. The math is the same for any value (same batches, "
        "same updates); larger values cut Python overhead for small models. auto: about 4,096 rows per call.",
    )
    jit_compile: Union[bool, Literal["auto"]] = Field(
        "auto",
        description="Compile the training step with XLA. auto: Keras's own choice on a GPU (XLA when every layer "
        "supports it); off on the CPU, where it cost 40% more on the seed job and saved about 3% per epoch on a "
        "1M-parameter MLP after its compile time (docs/performance.md). true/false: as given.",
    )

    cache_frozen_backbone: bool = Field(
        True,
        description="With model.backbone (a keras.applications model) wholly frozen, no data.augment and no layer "
        "in it that acts differently in training (Dropout, noise), compute its outputs for the images once and "
        "train the layers after it on them: the same math, each epoch without the backbone's pass. Images in "
        "memory only. false: run the whole model at every step.",
    )

    @field_validator("class_weight", mode="before")
    @classmethod
    def _class_weight_kind(cls, value: Any) -> Any:
        if value is None or value == "balanced" or isinstance(value, dict):
            return value
        raise _reject(f"got {value!r} — expected balanced, a mapping {{label: weight, ...}}, or null")

    @field_validator("class_weight")
    @classmethod
    def _class_weight(cls, value: Any) -> Any:
        if isinstance(value, dict):
            if not value:
                raise _reject("is empty — expected {label: weight, ...}, balanced, or null")
            bad = [(label, weight) for label, weight in value.items() if not (weight > 0 and weight < float("inf"))]
            if bad:
                raise _reject(f"weight {bad[0][1]!r} for label {bad[0][0]!r} — expected a number greater than 0")
        return value

    @field_validator("jit_compile", mode="before")
    @classmethod
    def _jit_compile(cls, value: Any) -> Any:
        if value == "auto" or isinstance(value, bool):
            return value
        raise _reject(f"got {value!r} — expected auto, true or false")

    @field_validator("steps_per_execution", mode="before")
    @classmethod
    def _steps_per_execution(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise _reject(f"got {value!r} — expected auto or a whole number >= 1")


class HeadConfig(_Section):
    """Replace the last layers of the parent model."""

    replace: int = Field(description="How many of the parent's last layers to drop.", ge=0)
    layers: list[LayerSpec] = Field(
        default_factory=list, description="Layers appended after dropping, e.g. a new softmax."
    )


Selector = Union[int, str]
# What the `_selectors` validator below accepts, said for the JSON Schema: one selector, or a list of them.
_SELECTOR_SCHEMA = {"anyOf": [{"type": "integer"}, {"type": "string", "minLength": 1}]}
Selectors = Annotated[list[Selector], WithJsonSchema(
    {"anyOf": [*_SELECTOR_SCHEMA["anyOf"], {"type": "array", "items": _SELECTOR_SCHEMA}]})]


class FinetuneConfig(_Section):
    """Read by `mlcli finetune`: which layers keep their trained weights."""

    freeze: Selectors = Field(
        default_factory=list,
        description="Selectors: index into model.layers (negative from the end), exact layer name, or glob; "
                    "input:<column> selects a typed model's encoder of that input column; `backbone` (all of it) or "
                    "`backbone/<glob>` (layers inside it). Read by train too (the backbone only).",
    )
    unfreeze: Selectors = Field(default_factory=list, description="Applied after freeze.")
    head: Union[HeadConfig, None] = Field(
        None, description="{replace: N, layers: [...]}: drop the last N layers and append these."
    )

    @field_validator("freeze", "unfreeze", mode="before")
    @classmethod
    def _selectors(cls, value: Any) -> Any:
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            value = [value]  # a single selector is a list of one
        if not isinstance(value, list):
            raise _reject(f"got {value!r} — expected a list of selectors such as [0, 1] or ['dense*']")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, (int, str)) or item in ("", "input:"):
                raise _reject(f"selector {item!r} — expected a layer index, a layer name, or a glob (or "
                              "input:<column>)")
        return value


class RuntimeConfig(_Section):
    """Where and how the computation runs."""

    device: str = Field(
        "auto", json_schema_extra=_pattern(_DEVICE),
        description="auto (every usable GPU, else CPU) | cpu | gpu (at least one GPU, else exit 4) | gpu:0,1 "
        "(those GPUs) | cpu:N (the CPU split into N logical devices, to try mirrored runs without GPUs)",
    )
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = Field(
        "auto", description="auto: mixed_bfloat16 on compute capability >= 8.0, mixed_float16 on 7.x, else float32."
    )
    distribute: Literal["auto", "none", "mirrored", "multi_worker"] = Field(
        "auto", description="auto: multi_worker when TF_CONFIG is set, mirrored with several devices, else none."
    )
    deterministic: bool = Field(
        False, description="Bitwise-repeatable runs and exact resume on CPU (slower op kernels)."
    )
    cluster_timeout: int = Field(
        300, ge=1,
        description="multi_worker: seconds every worker listed in TF_CONFIG has to join before the run fails "
        "(exit 4) instead of waiting forever.",
    )
    peer_timeout: int = Field(
        30, ge=5,
        description="multi_worker: seconds without a heartbeat after which a worker counts as lost: every other "
        "worker then stops (exit 4), and starting every worker again with --resume continues the run. Heartbeats "
        "go from a background thread, so a long step or save is not silence; 5 at least, as they go every few "
        "seconds.",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise _reject(f"{value!r} is not a device — expected auto, cpu, gpu, or gpu:0,1 (GPU indices); "
                          "cpu:2 splits the CPU into 2 logical devices")
        return value


def _default_loss() -> str:
    return "categorical_crossentropy"


def _names_in_items(schema: dict) -> None:
    schema["items"].update(_pattern(_NAME))  # a string item is a Keras name (a mapping is checked by its `type`)


class SpaceSpec(_Section):
    """One search-space entry of tune.space: exactly one of loguniform, uniform, int, choice."""

    loguniform: Union[Annotated[list[float], Field(min_length=2, max_length=2)], None] = Field(
        None, description="[low, high], both > 0: sampled evenly on a log scale (learning rates).")
    uniform: Union[Annotated[list[float], Field(min_length=2, max_length=2)], None] = Field(
        None, description="[low, high]: a float sampled evenly.")
    int: Union[Annotated[list[builtins.int], Field(min_length=2, max_length=2)], None] = Field(
        None, description="[low, high]: an integer from low to high, both included.")
    step: Union[Annotated[builtins.int, Field(ge=1)], None] = Field(None, description="int: the step between values (default 1).")
    choice: Union[Annotated[list[Union[bool, builtins.int, float, str, None]], Field(min_length=1)], None] = Field(
        None, description="One of these values (numbers, strings, true/false, null).")

    def kind(self) -> str:
        return next(k for k in ("loguniform", "uniform", "int", "choice") if getattr(self, k) is not None)

    def values(self) -> list:
        """Every value worth checking against the config: the bounds, or each choice."""
        return list(getattr(self, self.kind()))

    @field_validator("loguniform", "uniform", mode="before")
    @classmethod
    def _floats(cls, value: Any) -> Any:
        # YAML `[0, 1]` is two integers: a float range takes them as floats.
        if isinstance(value, list):
            return [float(v) if isinstance(v, builtins.int) and not isinstance(v, bool) else v for v in value]
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> "SpaceSpec":
        kinds = [k for k in ("loguniform", "uniform", "int", "choice") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise _reject(f"{'has ' + ' and '.join(kinds) if kinds else 'is empty'} — expected exactly one of "
                          "loguniform: [low, high], uniform: [low, high], int: [low, high], choice: [...]")
        kind = kinds[0]
        if self.step is not None and kind != "int":
            raise _reject("step is for int ranges only")
        if kind != "choice":
            low, high = getattr(self, kind)
            if not low < high:
                raise _reject(f"{kind}: [{low}, {high}] — expected low < high")
            if kind == "loguniform" and low <= 0:
                raise _reject(f"loguniform: [{low}, {high}] — both bounds must be > 0 (a log scale)")
        elif len({repr(v) for v in self.choice}) != len(self.choice):
            raise _reject("lists a value twice — name each choice once")
        return self


class TuneConfig(_Section):
    """Read by `mlcli tune`: the metric, the trials and the search space of a sweep (Optuna)."""

    metric: str = Field("val_loss", description="The metric every trial is judged by: any metric the run "
                        "reports during training (loss, val_accuracy, ...).")
    direction: Literal["auto", "maximize", "minimize"] = Field(
        "auto", description="auto: minimize for losses and errors (loss, mse, mae, ...), maximize otherwise.")
    trials: int = Field(20, ge=1, description="Trials in total (a resumed sweep counts the ones it has).")
    sampler: Literal["tpe", "random", "grid"] = Field(
        "tpe", description="tpe (Optuna's default Bayesian sampler) | random | grid (choice and int spaces only).")
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="Stops unpromising trials early from their per-epoch values of the metric.")
    space: dict[str, SpaceSpec] = Field(
        default_factory=dict,
        description="Dotted config keys, as --set writes them, each with {loguniform|uniform|int: [low, high]} "
        "or {choice: [...]}.")
    storage: Union[str, None] = Field(
        None, description="An Optuna storage URL (sqlite:///..., postgresql://...); null: the sweep's study.db. "
        "Several `mlcli tune` processes on one storage share one study.")
    seed: Union[Annotated[int, Field(ge=0, le=SEED_MAX)], None] = Field(
        None, description="Seeds the sampler; null: the config's seed. Same seed, same sampled parameters.")

    @field_validator("space")
    @classmethod
    def _space(cls, value: dict) -> dict:
        if not value:
            raise _reject("is empty — expected dotted config keys, e.g. optimizer.learning_rate: "
                          "{loguniform: [1.0e-4, 1.0e-1]}")
        return value


class Config(_Section):
    """A whole mlcli config."""

    name: Union[str, None] = Field(
        None, json_schema_extra=_pattern(_RUN_NAME),
        description="Run name, the run directory's default name; default: the config file's stem (characters a "
        "directory name should not hold, such as spaces, become '-').",
    )
    seed: int = Field(42, ge=0, le=SEED_MAX, description="Seeds every random generator; recorded in the run.")
    extends: Union[str, None] = Field(
        None, json_schema_extra={"minLength": 1},
        description="A config this one is merged onto (relative to this file); lists replace.",
    )
    data: DataConfig = Field(description="The data section (data.train is required).")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The Keras Sequential architecture.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="The optimizer.")
    loss: Union[str, LossSpec] = Field(
        default_factory=_default_loss, json_schema_extra=_pattern(_NAME),
        description="Any keras.losses name or {type: .., ...}; labels are encoded to fit it.",
    )
    metrics: list[Union[str, MetricSpec]] = Field(
        default_factory=lambda: ["accuracy"], json_schema_extra=_names_in_items,
        description="keras.metrics names or {type: .., ...}.",
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig,
                                     description="The training run: epochs, batch size, early stopping, checkpoints.")
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig, description="Read by `mlcli finetune`.")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="Device, precision, distribution.")
    tune: Union[TuneConfig, None] = Field(None, description="Read by `mlcli tune`: a hyperparameter sweep.")

    @field_validator("name")
    @classmethod
    def _run_name(cls, value: str | None) -> str | None:
        if value is not None and not _RUN_NAME.match(value):
            raise _reject(f"{value!r} cannot name a run directory — use letters and digits (any script), then "
                          "also '.', '_' or '-'")
        return value

    @field_validator("loss", mode="before")
    @classmethod
    def _loss(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not _NAME.match(value):
                raise _reject(f"{value!r} is not a Keras loss name — expected e.g. categorical_crossentropy")
            return value
        if isinstance(value, dict):
            return value
        raise _reject(f"got {value!r} — expected a keras.losses name or a mapping with `type`")

    @field_validator("metrics", mode="before")
    @classmethod
    def _metrics(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise _reject(f"got {value!r} — expected a list such as [accuracy]")
        for item in value:
            if isinstance(item, str) and not _NAME.match(item):
                raise _reject(f"{item!r} is not a Keras metric name — expected e.g. accuracy or mae")
            if not isinstance(item, (str, dict)):
                raise _reject(f"got {item!r} — expected a metric name or a mapping with `type`")
        return value
