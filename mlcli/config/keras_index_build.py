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

- value rules, learnt from Keras rather than written by hand (mlcli.config.keras_probes): for each
  argument of a class a config constructs, the kinds of value Keras refuses (`units: many`,
  `rate: 1.5`) and the strings it takes (`padding: same`). A class no construction of which works
  (a wrapper that needs a layer object) has none.
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import json
import math
import sys
from pathlib import Path
from typing import Any

from mlcli import runtime
from mlcli.config import keras_probes
from mlcli.config.keras_index import FORMAT, INDEX_FILE, KerasIndex, installed_keras
from mlcli.config.keras_rules import REFUSED, declared_parameters, numeric_defaults, public_classes

# Kinds whose classes a config constructs (and whose arguments are therefore tried with values).
CONSTRUCTED = ("layers", "optimizers", "schedules", "losses", "metrics")


def _keras():
    runtime.import_tensorflow()  # quietly, as every command imports it
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


def class_lists(keras) -> dict[str, dict[str, type]]:
    return {kind: public_classes(module, base) for kind, (module, base) in _modules(keras).items()}


def registry_names(keras) -> dict[str, list[str]]:
    """The strings each Keras get() resolves, tried from the names its registry lists."""
    # deferred: Keras; the registries' keys (aliases such as mse) are only listed in these modules
    from keras.src import activations, constraints, initializers, losses, metrics, regularizers
    from keras.src.backend.common import dtypes

    sources = {"activations": (activations, keras.activations.get), "initializers": (initializers, keras.initializers.get),
               "regularizers": (regularizers, keras.regularizers.get), "constraints": (constraints, keras.constraints.get),
               "losses": (losses, keras.losses.get), "metrics": (metrics, keras.metrics.get)}
    names = {}
    with keras_probes.silenced():
        for registry, (module, get) in sources.items():
            public = [n for n in dir(getattr(keras, registry)) if not n.startswith("_")]
            candidates = sorted(set(getattr(module, "ALL_OBJECTS_DICT", {})) | set(public))
            names[registry] = [n for n in candidates if keras_probes.accepts(get, {"identifier": n})]
        candidates = sorted(set(dtypes.ALLOWED_DTYPES) | {"mixed_float16", "mixed_bfloat16"})
        names["dtypes"] = [n for n in candidates if keras_probes.accepts(keras.dtype_policies.get, {"identifier": n})]
    return names


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
    rules = keras_probes.value_rules(cls, required, optional, words, names) if probe else {}
    numbers = numeric_defaults(cls)
    arguments = []
    for name, (_, parameter) in parameters.items():
        argument = {"name": name, "required": True} if name in required else _argument(parameter)
        if name in numbers and numbers[name] != argument.get("default"):
            argument["numeric_default"] = numbers[name]  # a base class's number, checked as build.py checks it
        if parameter.annotation is not parameter.empty:
            argument["annotation"] = str(parameter.annotation)
        arguments.append({**argument, **(rules or {}).get(name, {})})
    entry: dict[str, Any] = {"doc": _first_line(cls.__doc__), "arguments": arguments}
    if rules is None:
        entry["unprobed"] = True
    return entry


def _argument(parameter: inspect.Parameter) -> dict[str, Any]:
    """An argument's name and default: plain data as JSON holds it (tuples as lists), else its repr."""
    argument: dict[str, Any] = {"name": parameter.name}
    if parameter.default is not parameter.empty:
        ok, value = _json_value(parameter.default)
        argument["default" if ok else "default_text"] = value if ok else repr(parameter.default)[:60]
    return argument


def _json_value(value: Any) -> tuple[bool, Any]:
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


def _probed(kind: str, name: str) -> bool:
    return kind in CONSTRUCTED and name not in REFUSED.get(kind, ())


def build_index() -> dict:
    """The whole index but its format and version: classes, names and applications."""
    keras = _keras()
    found = class_lists(keras)
    words, names = keras_probes.quoted_words(found), registry_names(keras)
    classes: dict[str, dict] = {}
    with keras_probes.silenced():
        for kind, named in found.items():
            classes[kind] = {name: describe_class(cls, _probed(kind, name), words, names)
                             for name, cls in sorted(named.items())}
    # Model functions, described from their signatures only (calling one would download weights).
    applications = {name: {"doc": _first_line(model.__doc__),
                           "arguments": [_argument(p) for p in inspect.signature(model).parameters.values()]}
                    for name, model in sorted(vars(keras.applications).items())
                    if name[:1].isupper() and callable(model)}
    return {"classes": classes, "names": names, "applications": applications}


def live_index() -> KerasIndex:
    """The index read from the installed Keras: names and class lists now, and each class when it is
    asked for (probing all of them takes a minute)."""
    keras = _keras()
    found = class_lists(keras)
    words, names = keras_probes.quoted_words(found), registry_names(keras)

    def describe(kind: str, name: str) -> dict | None:
        cls = found[kind].get(name)
        if cls is None:
            return None
        with keras_probes.silenced():
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
