"""model.backbone checked without TensorFlow (docs/contract.md §7): a keras.applications name from
mlcli's Keras index (did-you-mean), its own arguments, the image size against the family's
smallest, and finetune selectors that reach into a backbone only when there is one."""

from __future__ import annotations

from mlcli.config.keras_index import KerasIndex
from mlcli.config.keras_rules import did_you_mean
from mlcli.config.load import LoadedConfig
from mlcli.errors import ConfigProblem
from mlcli.model.backbone_spec import BACKBONE, OWNED, PREFIX, is_backbone_selector, min_size

_WHERE = ("model", "backbone")


def backbone_problems(loaded: LoadedConfig, index: KerasIndex) -> list[ConfigProblem]:
    config = loaded.config
    spec = config.model.backbone
    problems = [loaded.problem(where, message) for where, message in _selector_problems(loaded)]
    if spec is None:
        return problems
    found: list[tuple[tuple, str]] = []
    if (spec.type is None) == (spec.preset is None):
        found.append((_WHERE, "give either type (a keras.applications model, e.g. MobileNetV3Small) or preset (a "
                              "KerasHub preset directory) — " + ("not both" if spec.type else "neither is set")))
    elif spec.preset is not None:
        if config.data.image is None:
            found += _text_feature(config)
        elif spec.sequence_length is not None:
            found.append((_WHERE + ("sequence_length",), "sequence_length is for text presets — remove it"))
        for key in ("weights", "pooling"):
            if spec.given(key) and key == "weights":
                found.append((_WHERE + (key,), "a preset holds its own weights — remove weights (or use type: "
                                               "<keras.applications name> with weights: FILE)"))
        for key in spec.arguments():
            found.append((_WHERE + (key,), f"unknown key for a preset backbone — expected preset, "
                                           f"sequence_length or pooling{did_you_mean(key, ['preset', 'sequence_length', 'pooling'])}"))
    else:
        if config.data.image is None:
            found.append((_WHERE + ("type",), f"{spec.type} takes images, but the data are a table — set data.image "
                                              "(e.g. {size: [96, 96]}) with a folder of class subfolders, or remove "
                                              "model.backbone"))
        found += _application(loaded, index, spec)
    return problems + [loaded.problem(where, message) for where, message in found]


def _application(loaded: LoadedConfig, index: KerasIndex, spec) -> list[tuple[tuple, str]]:
    applications = index.data.get("applications") or {}
    if not applications:  # an index made for another Keras (read live): the builder checks the name
        return []
    if spec.type not in applications:
        return [(_WHERE + ("type",), f"{spec.type!r} is not a keras.applications model"
                 + did_you_mean(spec.type, sorted(applications)))]
    found = []
    if spec.sequence_length is not None:
        found.append((_WHERE + ("sequence_length",), "sequence_length is for text presets — remove it"))
    accepted = [a["name"] for a in applications[spec.type]["arguments"]]
    for key in spec.arguments():
        if key in OWNED:
            found.append((_WHERE + (key,), f"mlcli sets {key} itself ({OWNED[key]}) — remove it"))
        elif key not in accepted:
            own = [a for a in accepted if a not in OWNED and a not in ("weights", "pooling")]
            found.append((_WHERE + (key,), f"{spec.type} takes no argument {key!r} — its own arguments are "
                                           f"{', '.join(own) or 'none'} (besides weights and pooling)"
                          + did_you_mean(key, own)))
    size = image_size(loaded)
    if size is not None and min(size) < min_size(spec.type):
        found.append((("data", "image", "size"), f"{list(size)} is below {spec.type}'s smallest input, "
                                                 f"{min_size(spec.type)}x{min_size(spec.type)} (model.backbone.type) — "
                                                 f"use data.image.size: [{max(size[0], min_size(spec.type))}, "
                                                 f"{max(size[1], min_size(spec.type))}] or larger"))
    return found


def _text_feature(config) -> list[tuple[tuple, str]]:
    """A text preset reads one text column: data.features must be exactly that, declared {name, type: text}."""
    features = config.data.features
    listed = [features] if isinstance(features, str) else list(features or [])
    texts = [i for i, item in enumerate(listed) if getattr(item, "type", None) == "text"]
    others = [i for i in range(len(listed)) if i not in texts]
    if others:
        item = listed[others[0]]
        name = item if isinstance(item, str) else item.name
        kind = getattr(item, "type", None) or "not declared text"
        return [(("data", "features", others[0]) if not isinstance(features, str) else ("data", "features"),
                 f"{name!r} ({kind}) cannot go through a text preset (model.backbone.preset), which reads one text "
                 "column — keep only the text column, declared {name: COLUMN, type: text}")]
    if len(texts) != 1:
        return [(("data", "features"), "a text preset (model.backbone.preset) reads one text column — set "
                                       "data.features: [{name: COLUMN, type: text}]")]
    return []


def image_size(loaded: LoadedConfig) -> tuple[int, int] | None:
    """data.image.size as (height, width), when the data are images."""
    image = loaded.config.data.image
    size = image.size if image is not None else None
    if size is None:
        return None
    return (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size), int(size))


def _selector_problems(loaded: LoadedConfig) -> list[tuple[tuple, str]]:
    """`backbone/<glob>` must name something; which layers it matches is known once the backbone is built."""
    config = loaded.config
    found = []
    for key in ("freeze", "unfreeze"):
        for position, selector in enumerate(getattr(config.finetune, key)):
            if not is_backbone_selector(selector):
                continue
            # Without model.backbone the selector may still be right: a finetune config's model is its
            # parent's (known once --from loads it). train's builder and finetune refuse it then.
            if config.model.backbone is None:
                continue
            if selector != BACKBONE and not selector[len(PREFIX):]:
                found.append((("finetune", key, position), f"{selector!r} names no layer — expected {PREFIX}<name or "
                                                           f"glob>, e.g. {PREFIX}block_1*"))
    return found
