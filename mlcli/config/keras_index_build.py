"""Write mlcli's index of Keras's public API (mlcli/config/keras_index.json.gz) from the installed Keras.

    make keras-index                                      # rewrite the shipped index
    python -m mlcli.config.keras_index_build --output X   # write it elsewhere (the test compares the two)

What it holds, so that `mlcli validate` can check a config without TensorFlow exactly as train
checks it with Keras loaded:

- classes: layers, optimizers, learning-rate schedules, losses and metrics (a config names them
  with `type:`), and initializers, regularizers and constraints: every public class of the Keras
  module that derives from its base class, found the way mlcli.model.build finds them, each with the
  keyword arguments mlcli passes it (those a class takes through **kwargs into its base class
  included: name, dtype, trainable, ...), their defaults and annotations, and the first line of its
  documentation;
- names: the strings Keras's own get() resolves for activations, initializers, regularizers,
  constraints, losses and metrics (relu, he_normal, categorical_crossentropy, accuracy), and the
  dtype names a layer's dtype takes;
- applications: the keras.applications model names with their arguments (no config names them yet);
- callbacks: none. A config cannot name a Keras callback: training.early_stopping and
  training.checkpoint are mlcli's own sections with mlcli's own keys.

Value rules are learnt from Keras rather than written by hand. Each argument of each class a config
constructs is tried with one value of every kind in keras_index.PROBES on top of a construction that
works (the required arguments from EXAMPLES); a kind Keras raised on is recorded as refused. When
Keras refuses text, the argument's strings are found: a registry's (when it takes e.g. `relu` or
`he_normal`), or the quoted words of its documentation that Keras accepts (`same`, `valid`), or none.
A class with no working construction (a wrapper that needs a layer object) has no value rules.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import inspect
import io
import json
import math
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from mlcli.config.keras_index import FORMAT, INDEX_FILE, KerasIndex, installed_keras
from mlcli.config.keras_rules import PROBES, REFUSED, declared_parameters, numeric_defaults, public_classes

# Kinds whose classes a config constructs (and whose arguments are therefore tried with values).
CONSTRUCTED = ("layers", "optimizers", "schedules", "losses", "metrics")
# Registries of names an argument may take (an activation, a dtype, ...): one takes a registry's
# names when Keras accepts the first and the last of them.
REGISTRIES = ("activations", "initializers", "regularizers", "constraints", "dtypes")

# Values that make a working construction, for required arguments (and for the optional ones a
# class cannot do without): the first that works for each class is used.
EXAMPLES: dict[str, list] = {
    "units": [2], "filters": [2], "kernel_size": [2], "rate": [0.5], "pool_size": [2], "target_shape": [[2]],
    "dims": [[1]], "n": [2], "factor": [0.1, 2], "height": [2], "width": [2], "input_dim": [2], "output_dim": [2],
    "num_heads": [2], "key_dim": [2], "scale": [1.0], "stddev": [0.1], "num_bins": [2], "output_size": [2],
    "axes": [1], "equation": ["ab,bc->ac"], "max_number": [2], "head_dim": [2], "num_query_heads": [2],
    "num_key_value_heads": [2], "height_factor": [0.1], "width_factor": [0.1], "output_shape": [[2]],
    "num_tokens": [2], "activation": ["relu"],
    "initial_learning_rate": [0.1], "decay_steps": [10], "decay_rate": [0.5], "first_decay_steps": [10],
    "boundaries": [[10]], "values": [[0.1, 0.01]],
    "num_classes": [2], "target_class_ids": [[0]], "precision": [0.5], "recall": [0.5], "sensitivity": [0.5],
    "specificity": [0.5],
}


def _keras():
    from mlcli import runtime

    runtime.import_tensorflow()  # deferred: quietly, as every command does
    import keras  # deferred: imports TensorFlow

    return keras


def _modules(keras) -> dict[str, tuple[Any, type]]:
    """kind -> (Keras module, base class), as mlcli.model.build resolves them."""
    return {
        "layers": (keras.layers, keras.layers.Layer),
        "optimizers": (keras.optimizers, keras.optimizers.Optimizer),
        "schedules": (keras.optimizers.schedules, keras.optimizers.schedules.LearningRateSchedule),
        "losses": (keras.losses, keras.losses.Loss),
        "metrics": (keras.metrics, keras.metrics.Metric),
        "initializers": (keras.initializers, keras.initializers.Initializer),
        "regularizers": (keras.regularizers, keras.regularizers.Regularizer),
        "constraints": (keras.constraints, keras.constraints.Constraint),
    }


@contextlib.contextmanager
def _silenced():
    """Keras prints and warns while the probes construct things: none of it is for the user."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _accepts(factory, arguments: dict) -> bool:
    try:
        factory(**arguments)
    except Exception:  # noqa: BLE001 — any failure is a refusal, as train would meet it
        return False
    return True


def _resolves(get, name: str) -> bool:
    return _accepts(lambda: get(name), {})


# ---- names --------------------------------------------------------------------------------------

def registry_names(keras) -> dict[str, list[str]]:
    """The strings each Keras get() resolves, from the candidates Keras lists (its registry's keys)."""
    from keras.src import activations, constraints, initializers, losses, metrics, regularizers  # deferred: Keras
    from keras.src.backend.common import dtypes  # deferred: Keras

    sources = {"activations": (activations, keras.activations.get), "initializers": (initializers, keras.initializers.get),
               "regularizers": (regularizers, keras.regularizers.get), "constraints": (constraints, keras.constraints.get),
               "losses": (losses, keras.losses.get), "metrics": (metrics, keras.metrics.get)}
    names = {}
    with _silenced():
        for registry, (module, get) in sources.items():
            public = [n for n in dir(getattr(keras, registry)) if not n.startswith("_")]
            candidates = sorted(set(getattr(module, "ALL_OBJECTS_DICT", {})) | set(public))
            names[registry] = [n for n in candidates if _resolves(get, n)]
        candidates = sorted(set(dtypes.ALLOWED_DTYPES) | {"mixed_float16", "mixed_bfloat16"})
        names["dtypes"] = [n for n in candidates if _resolves(keras.dtype_policies.get, n)]
    return names


# ---- one class ----------------------------------------------------------------------------------

def _json_value(value: Any) -> tuple[bool, Any]:
    """(representable, value) for a default: plain data as JSON holds it, tuples as lists."""
    if value is None or isinstance(value, (bool, int, str)):
        return True, value
    if isinstance(value, float):
        return math.isfinite(value), value
    if isinstance(value, (tuple, list)):
        items = [_json_value(v) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    return False, None


def _first_line(doc: str | None) -> str:
    text = inspect.cleandoc(doc or "").split("\n\n", 1)[0]
    return " ".join(text.split())[:160]


def _argument_doc(cls: type, name: str) -> str:
    """The argument's paragraph in the Args: section of the first class docstring that has one."""
    for klass in cls.__mro__:
        doc = inspect.cleandoc(klass.__doc__ or "")
        match = re.search(rf"^(\s*){re.escape(name)}:(.*(?:\n\1\s+.*)*)", doc, re.M)
        if match:
            return match.group(2)
    return ""


def quoted_words(classes: dict[str, dict[str, type]]) -> dict[str, list[str]]:
    """argument name -> the words its documentation quotes and its string defaults, over every class:
    the strings an argument may take when Keras refuses an arbitrary one (`same`, `channels_last`)."""
    words: dict[str, dict[str, None]] = {}
    for found in classes.values():
        for cls in found.values():
            for _, parameter in declared_parameters(cls):
                seen = words.setdefault(parameter.name, {})
                if isinstance(parameter.default, str):
                    seen[parameter.default] = None
                for word in re.findall(r"[\"'`]([A-Za-z_][A-Za-z0-9_]*)[\"'`]", _argument_doc(cls, parameter.name)):
                    seen[word] = None
    return {name: list(seen) for name, seen in words.items()}


def _baseline(cls: type, required: list[str], optional: list[str]) -> dict | None:
    """Arguments that make cls(...) work: the required ones from EXAMPLES, then optional ones too."""
    if any(name not in EXAMPLES for name in required):
        return None
    optional = [name for name in optional if name in EXAMPLES]
    for names in (required, required + optional):
        for attempt in range(max((len(EXAMPLES[n]) for n in names), default=1)):
            chosen = {n: EXAMPLES[n][min(attempt, len(EXAMPLES[n]) - 1)] for n in names}
            if _accepts(cls, chosen):
                return chosen
    return None


def _set_by_the_class(cls: type, base: dict, name: str) -> bool:
    """An argument of a base class that the class passes itself (Conv2D's rank): any value fails."""
    try:
        cls(**{**base, name: EXAMPLES.get(name, [2])[0]})
    except TypeError as exc:
        return "got multiple values for" in str(exc)
    except Exception:  # noqa: BLE001 — refused for another reason
        return False
    return False


def _text_rule(cls: type, base: dict, name: str, words: list[str], names: dict[str, list[str]]) -> dict:
    """What strings an argument takes, once Keras has refused an arbitrary one: a registry's names,
    or those of its documented words (and of a registry it takes part of, or is named after: dtype)
    that Keras accepts."""
    candidates = list(words)
    for registry in REGISTRIES:
        samples = [names[registry][0], names[registry][-1]]
        taken = [sample for sample in samples if _accepts(cls, {**base, name: sample})]
        if taken == samples:
            return {"text": registry}
        if taken or name.endswith(registry[:-1]):  # part of a registry, e.g. Hashing's integer dtypes
            candidates += names[registry]
    accepted = [w for w in dict.fromkeys(candidates) if _accepts(cls, {**base, name: w})]
    rule: dict = {"text": accepted}
    if accepted and accepted[0].upper() != accepted[0] and _accepts(cls, {**base, name: accepted[0].upper()}):
        rule["ignore_case"] = True
    return rule


def describe_class(cls: type, probe: bool, words: dict[str, list[str]], names: dict[str, list[str]]) -> dict:
    """One class: its documentation line and arguments; with `probe`, what Keras refuses for each
    (the strings tried when Keras refuses arbitrary text: `words` from quoted_words, registry `names`)."""
    declared = declared_parameters(cls)
    own = declared[0][0] if declared else cls
    parameters: dict[str, tuple[type, inspect.Parameter]] = {}
    for klass, parameter in declared:
        parameters.setdefault(parameter.name, (klass, parameter))  # the subclass's declaration wins
    # Required: what the class's own constructor cannot do without (a base class's required
    # arguments are the ones the class passes it).
    required = [name for name, (klass, p) in parameters.items() if klass is own and p.default is p.empty]
    optional = [name for name, (_, p) in parameters.items() if p.default is None]
    base = _baseline(cls, required, optional) if probe else None
    numbers = numeric_defaults(cls)
    arguments = []
    for name, (_, parameter) in parameters.items():
        argument: dict[str, Any] = {"name": name}
        if name in required:
            argument["required"] = True
        elif parameter.default is not parameter.empty:
            ok, value = _json_value(parameter.default)
            argument["default" if ok else "default_text"] = value if ok else repr(parameter.default)[:60]
        if name in numbers and numbers[name] != argument.get("default"):
            argument["numeric_default"] = numbers[name]  # a base class's number, checked as build.py checks it
        if parameter.annotation is not parameter.empty:
            argument["annotation"] = str(parameter.annotation)
        if base is not None:
            refused = [kind for kind, value in PROBES.items() if not _accepts(cls, {**base, name: value})]
            if len(refused) == len(PROBES) and _set_by_the_class(cls, base, name):
                argument["set_by_class"] = True
            elif refused:
                argument["refuses"] = refused
                if "text" in refused:
                    argument.update(_text_rule(cls, base, name, words.get(name, []), names))
        arguments.append(argument)
    entry: dict[str, Any] = {"doc": _first_line(cls.__doc__), "arguments": arguments}
    if probe and base is None:
        entry["unprobed"] = True
    return entry


# ---- the whole index ----------------------------------------------------------------------------

def class_lists(keras) -> dict[str, dict[str, type]]:
    return {kind: public_classes(module, base) for kind, (module, base) in _modules(keras).items()}


def _probed(kind: str, name: str) -> bool:
    return kind in CONSTRUCTED and name not in REFUSED.get(kind, ())


def build_index() -> dict:
    """The whole index but its format and version: classes, names and applications."""
    keras = _keras()
    found = class_lists(keras)
    words, names = quoted_words(found), registry_names(keras)
    classes: dict[str, dict] = {}
    with _silenced():
        for kind, named in found.items():
            classes[kind] = {name: describe_class(cls, _probed(kind, name), words, names)
                             for name, cls in sorted(named.items())}
    applications = {}
    for name in sorted(dir(keras.applications)):
        model = getattr(keras.applications, name)
        if name[:1].isupper() and callable(model):
            applications[name] = describe_class_function(model)
    return {"classes": classes, "names": names, "applications": applications}


def describe_class_function(function) -> dict:
    """A keras.applications model function: its documentation line and arguments (never called: it
    would download weights)."""
    arguments = []
    for name, parameter in inspect.signature(function).parameters.items():
        argument: dict[str, Any] = {"name": name}
        if parameter.default is not parameter.empty:
            ok, value = _json_value(parameter.default)
            argument["default" if ok else "default_text"] = value if ok else repr(parameter.default)[:60]
        arguments.append(argument)
    return {"doc": _first_line(function.__doc__), "arguments": arguments}


def live_index() -> KerasIndex:
    """The index read from the installed Keras: names and class lists now, and each class when it is
    asked for (probing all of them takes a minute)."""
    keras = _keras()
    found = class_lists(keras)
    words, names = quoted_words(found), registry_names(keras)

    def describe(kind: str, name: str) -> dict | None:
        cls = found[kind].get(name)
        if cls is None:
            return None
        with _silenced():
            return describe_class(cls, _probed(kind, name), words, names)

    classes = {kind: dict.fromkeys(named) for kind, named in found.items()}
    return KerasIndex({"format": FORMAT, "keras": installed_keras(), "classes": classes, "names": names,
                       "applications": {}}, describe)


def write_index(path: Path) -> None:
    """The index of the installed Keras as compact JSON in gzip: the same bytes for the same Keras."""
    data = {"format": FORMAT, "keras": installed_keras(), **build_index()}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as handle:
        handle.write(text.encode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlcli.config.keras_index_build",
                                     description="Write mlcli's index of the installed Keras (`make keras-index`).")
    parser.add_argument("--output", type=Path, default=INDEX_FILE, help="where to write it (default: the shipped file)")
    args = parser.parse_args(argv)
    write_index(args.output)
    print(f"wrote {args.output} for Keras {installed_keras()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
