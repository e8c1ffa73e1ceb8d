"""What Keras refuses, learnt by trying: the value rules of mlcli's Keras index.

Each argument of a class a config constructs is tried with one value of every kind in
keras_rules.PROBES, on top of a construction that works (required arguments from EXAMPLES); a kind
Keras raised on is recorded as refused, and `mlcli validate` refuses it too. When Keras refuses text,
the strings it takes are found: a registry's (activations, initializers, dtypes, ...), or the words
the argument's documentation quotes that Keras accepts (`same`, `channels_last`), or none. Nothing
here imports Keras: mlcli.config.keras_index_build hands it the classes.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import re
import warnings

from mlcli.config.keras_rules import PROBES, declared_parameters

# Registries of names an argument may take: one takes a registry's names when Keras accepts the
# first and the last of them.
REGISTRIES = ("activations", "initializers", "regularizers", "constraints", "dtypes")

# Values that make a working construction, for required arguments (and for the optional ones a
# class cannot do without): the first that works for a class is used.
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


@contextlib.contextmanager
def silenced():
    """Keras prints and warns while the probes construct things: none of it is for the user."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def accepts(factory, arguments: dict) -> bool:
    try:
        factory(**arguments)
    except Exception:  # noqa: BLE001 — any failure is a refusal, as train would meet it
        return False
    return True


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


def _argument_doc(cls: type, name: str) -> str:
    """The argument's paragraph in the Args: section of the first class docstring that has one."""
    for klass in cls.__mro__:
        doc = inspect.cleandoc(klass.__doc__ or "")
        match = re.search(rf"^(\s*){re.escape(name)}:(.*(?:\n\1\s+.*)*)", doc, re.M)
        if match:
            return match.group(2)
    return ""


def value_rules(cls: type, required: list[str], optional: list[str], words: dict[str, list[str]],
                names: dict[str, list[str]]) -> dict[str, dict] | None:
    """argument -> what Keras refuses for it ({"refuses": kinds, "text": ..., "set_by_class": True}),
    for every argument mlcli passes cls; None when no construction of cls works."""
    base = _baseline(cls, required, optional)
    if base is None:
        return None
    rules: dict[str, dict] = {}
    for _, parameter in declared_parameters(cls):
        name = parameter.name
        if name in rules:
            continue
        refused = [kind for kind, value in PROBES.items() if not accepts(cls, {**base, name: value})]
        rule: dict = {}
        if len(refused) == len(PROBES) and _set_by_the_class(cls, base, name):
            rule["set_by_class"] = True
        elif refused:
            rule["refuses"] = refused
            if "text" in refused:
                rule.update(_text_rule(cls, base, name, words.get(name, []), names))
        rules[name] = rule
    return rules


def _baseline(cls: type, required: list[str], optional: list[str]) -> dict | None:
    """Arguments that make cls(...) work: the required ones from EXAMPLES, then optional ones too."""
    if any(name not in EXAMPLES for name in required):
        return None
    optional = [name for name in optional if name in EXAMPLES]
    for names in (required, required + optional):
        for attempt in range(max((len(EXAMPLES[n]) for n in names), default=1)):
            chosen = {n: EXAMPLES[n][min(attempt, len(EXAMPLES[n]) - 1)] for n in names}
            if accepts(cls, chosen):
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
        taken = [sample for sample in samples if accepts(cls, {**base, name: sample})]
        if taken == samples:
            return {"text": registry}
        if taken or name.endswith(registry[:-1]):  # part of a registry, e.g. Hashing's integer dtypes
            candidates += names[registry]
    accepted = [w for w in dict.fromkeys(candidates) if accepts(cls, {**base, name: w})]
    rule: dict = {"text": accepted}
    if accepted and accepted[0].upper() != accepted[0] and accepts(cls, {**base, name: accepted[0].upper()}):
        rule["ignore_case"] = True
    return rule
