"""What mlcli knows about a `model.backbone` without TensorFlow (docs/contract.md §7): the
keras.applications families' smallest input and their preprocessing, and the selectors that reach
into a backbone (`backbone`, `backbone/<glob>`). The names themselves come from mlcli's Keras index
(mlcli/config/keras_index.json.gz, its `applications`), so validate knows every one of them.
"""

from __future__ import annotations

import fnmatch

BACKBONE = "backbone"  # the nested model's name in model.keras, and the selector for all of it
PREFIX = BACKBONE + "/"  # backbone/<glob>: layers inside it
PREPROCESS = "backbone_preprocess"  # the name prefix of the input scaling mlcli adds in front of some families

# The smallest height and width each family's keras.applications constructor accepts (its
# obtain_input_shape(min_size=...)); 32 for every other one.
_MIN_SIZE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}

# How each family wants its [0, 255] RGB pixels (keras.applications.<family>.preprocess_input), done
# here by Keras layers inside the model so predict and export carry it:
#   builtin: the application does it itself (include_preprocessing) — ConvNeXt, EfficientNet(V2), MobileNetV3
#   tf:      x / 127.5 - 1
#   torch:   x / 255, then minus the ImageNet mean over its standard deviation, per channel
#   caffe:   minus the ImageNet mean per channel, and BGR order (mlcli flips the first convolution's
#            kernel instead of the pixels, which is the same arithmetic)
_TF = ("MobileNet", "MobileNetV2", "ResNet50V2", "ResNet101V2", "ResNet152V2", "InceptionV3", "InceptionResNetV2",
       "Xception", "NASNetMobile", "NASNetLarge")
_CAFFE = ("ResNet50", "ResNet101", "ResNet152", "VGG16", "VGG19")


def min_size(name: str) -> int:
    return _MIN_SIZE.get(name, 32)


def preprocessing(name: str) -> str:
    """builtin | tf | torch | caffe, for a keras.applications name."""
    if name in _TF:
        return "tf"
    if name in _CAFFE:
        return "caffe"
    if name.startswith("DenseNet"):
        return "torch"
    return "builtin"


# The keras.applications arguments mlcli sets itself: a config giving one of them is told why.
OWNED = {
    "include_top": "always false: model.layers is the head",
    "input_shape": "taken from data.image",
    "input_tensor": "mlcli connects the backbone to the image input",
    "classes": "the head (model.layers) decides the outputs",
    "classifier_activation": "the head (model.layers) decides the outputs",
    "include_preprocessing": "always true: the backbone's preprocessing is inside model.keras",
    "name": f"the backbone is always named {BACKBONE!r} (finetune selectors reach it by that name)",
}


def is_backbone_selector(selector: int | str) -> bool:
    return isinstance(selector, str) and (selector == BACKBONE or selector.startswith(PREFIX))


def inner_matches(names: list[str], selector: str) -> list[int]:
    """Indices of the backbone's inner layers (`names`) a selector picks: all for `backbone`, else
    `backbone/<name or glob>`."""
    if selector == BACKBONE:
        return list(range(len(names)))
    pattern = selector[len(PREFIX):]
    exact = [i for i, name in enumerate(names) if name == pattern]
    if exact:
        return exact
    return [i for i, name in enumerate(names) if fnmatch.fnmatchcase(name, pattern)]
