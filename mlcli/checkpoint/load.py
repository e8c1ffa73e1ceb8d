"""A checkpoint's model, loaded with Keras in safe mode, and compiled for evaluation as its run was.

`unsafe` is the user's --unsafe: they trust the file enough to let Keras run Python code stored in
it. Every stage that loads a model takes it as a parameter, so nothing else can switch it on.
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from mlcli.checkpoint.archive import check_archive, read_archive_config
from mlcli.checkpoint.checkpoint import Checkpoint
from mlcli.errors import UsageError, first_line
from mlcli.model.compile import build_loss, build_metrics
from mlcli.model.label_transform import transform_of, transformed_loss
from mlcli.runtime import import_tensorflow


def load_keras(path: Path, *, compile: bool, unsafe: bool, what: str = "CKPT"):
    """keras.saving.load_model in Keras's safe mode unless `unsafe`; every failure is exit 2.

    Safe mode refuses Python code stored in a model (a Lambda layer's function, custom objects), so
    loading a file from elsewhere never runs it unless the user says they trust it. Keras only sees
    an archive whose declared sizes passed (exit 3 otherwise, mlcli.checkpoint.archive).
    """
    check_archive(path, what)
    import keras  # deferred: imports TensorFlow

    tokenizers = {}
    if _names_keras_hub(path, what):
        import keras_hub  # noqa: F401  # deferred: registers KerasHub's classes (a preset backbone) with Keras

        tokenizers = _tokenizers_with_vocabulary(path, what)

    try:
        with warnings.catch_warnings():
            # A typed model's input for a column named a/b is named a_b (Keras refuses '/'): not news.
            warnings.filterwarnings("ignore", message="When providing `inputs` as a dict")
            with _registered(keras, tokenizers):
                return keras.saving.load_model(path, compile=compile, safe_mode=not unsafe)
    except Exception as exc:  # noqa: BLE001 — a user's file can fail in any of Keras's ways
        text = str(exc)
        if "safe_mode" in text or "arbitrary code" in text:
            raise UsageError(
                f"{what} {path}: holds Python code (e.g. a Lambda layer), which mlcli does not run from a "
                "model file by default (Keras safe mode)",
                hint="pass --unsafe only if you trust where the file came from",
            ) from None
        raise UsageError(f"{what} {path}: cannot be loaded as a Keras model: {first_line(exc)}",
                         hint="pass a run directory or a .keras file saved by Keras 3") from None


def _tokenizers_with_vocabulary(path: Path, what: str) -> dict:
    """KerasHub's tokenizers keep their vocabulary as an archive asset that Keras loads only after it
    has rebuilt the model — but rebuilding a functional model calls the tokenizer, which then has no
    vocabulary (keras-hub issue #1522). So the vocabulary is read from the archive first and given to
    the tokenizer as it is made; Keras then loads the same asset into it as usual."""
    import keras  # deferred: imports TensorFlow

    with zipfile.ZipFile(path) as archive:
        assets = [name for name in archive.namelist() if name.startswith("assets/") and name.endswith("/vocabulary.txt")]
        if len(assets) != 1:
            return {}
        vocabulary = archive.read(assets[0]).decode("utf-8").splitlines()
    text = json.dumps(read_archive_config(path, what))
    loaders = {}
    for name in set(re.findall(r'"registered_name": "(keras_hub>[A-Za-z0-9]*Tokenizer)"', text)):
        cls = keras.saving.get_registered_object(name)
        if cls is None:
            continue

        class _WithVocabulary:
            @staticmethod
            def from_config(config, cls=cls):
                return cls.from_config({**config, "vocabulary": config.get("vocabulary") or vocabulary})

        loaders[name] = _WithVocabulary
    return loaders


@contextlib.contextmanager
def _registered(keras, loaders: dict):
    """Keras's registry maps the names to `loaders` for the duration (Keras looks its registry up before
    any custom_objects given to load_model)."""
    registry = keras.saving.get_custom_objects()
    saved = {name: registry[name] for name in loaders if name in registry}
    registry.update(loaders)
    try:
        yield
    finally:
        for name in loaders:
            registry.pop(name, None)
        registry.update(saved)


def _names_keras_hub(path: Path, what: str) -> bool:
    """Whether the archive's model holds KerasHub objects (registered as "keras_hub>...")."""
    return '"keras_hub>' in json.dumps(read_archive_config(path, what))


def load_model(ckpt: Checkpoint, *, unsafe: bool):
    """(model, checkpoint): the model loaded (not compiled), and the checkpoint with what the model
    tells: its exact input shape, and a standalone classifier's classes (0..n-1)."""
    import_tensorflow()
    model = load_keras(ckpt.model_path, compile=False, unsafe=unsafe)
    if ckpt.typed is not None:  # named raw columns: the records say what each input is
        return model, ckpt
    shape = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    if shape is None or any(d is None for d in shape):
        raise UsageError(f"CKPT {ckpt.model_path}: the model's input shape {model.input_shape} is not one fixed "
                         "row shape — evaluate and predict need a model with one input of a known size")
    classes = ckpt.classes
    if ckpt.task == "classification" and classes is None:
        units = int(np.prod(model.output_shape[1:]))
        classes = [0, 1] if units == 1 else list(range(units))
    return model, replace(ckpt, input_shape=tuple(int(d) for d in shape), classes=classes)


def compile_for_evaluation(model, ckpt: Checkpoint) -> None:
    """The run's own loss and metrics, so evaluate reports Keras's names and numbers as training did."""
    if ckpt.loaded is not None:
        # a data.label_transform run's loss is on the transformed scale, as training logged it
        model.compile(loss=transformed_loss(build_loss(ckpt.loaded), transform_of(model)),
                      metrics=build_metrics(ckpt.loaded))
        return
    recorded = ckpt.compile_config or {}
    if recorded.get("loss") is not None:
        loss, metrics = recorded["loss"], ckpt.standalone_metrics()
    elif ckpt.task == "classification":
        units = int(np.prod(model.output_shape[1:]))
        loss, metrics = ("binary_crossentropy" if units == 1 else "sparse_categorical_crossentropy"), ["accuracy"]
    else:
        loss, metrics = "mse", ["mae"]
    try:
        model.compile(loss=loss, metrics=metrics)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"CKPT {ckpt.model_path}: its recorded loss/metrics cannot be rebuilt: {first_line(exc)}"
        ) from None
