"""The memory a configured model needs to train, estimated from the config before anything is built.

A layer size nobody could train (`--set model.layers.0.units=1000000000000`) would otherwise fail deep
inside TensorFlow with a ResourceExhaustedError, or first swap the machine to a halt. What is counted:

- parameters of the layers whose size the config fixes: Dense (inputs x units + units), Embedding
  (input_dim x output_dim), BatchNormalization (4 per feature), LayerNormalization (2 per feature),
  PReLU (1 per feature); other layers count nothing, and a layer that changes the shape in a way this
  walk does not follow leaves the next Dense's inputs unknown (only its units are counted then);
- four bytes per parameter for the weights, as many for their gradients, and as many again for each
  slot the optimizer keeps per weight (Adam: 2, SGD with momentum: 1, ...) — for a finetune run, the
  parent's kept layers count their weights only, as if frozen (they exist already: the parent fits);
- the outputs of every counted layer for one training batch, kept for the backward pass, and their
  gradients.

It is a lower bound of what TensorFlow allocates, so what it refuses cannot fit.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from mlcli.config.load import LoadedConfig
from mlcli.config.schema import LayerSpec
from mlcli.errors import ConfigError
from mlcli.model.heads import kept_layers

_BYTES = 4  # float32: weights stay float32 under mixed precision too
_KEEP_SHAPE = {"Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise", "SpatialDropout1D", "Activation",
               "ReLU", "LeakyReLU", "ELU", "Softmax", "ActivityRegularization", "Identity"}
# Slots an optimizer keeps per weight (keras.optimizers); an optimizer not listed is counted with 2.
_SLOTS = {"adam": 2, "adamw": 2, "adamax": 2, "nadam": 2, "adadelta": 2, "ftrl": 2, "lamb": 2, "adagrad": 1,
          "lion": 1, "adafactor": 2}


@dataclass(frozen=True)
class LayerSize:
    key: tuple  # where the layer is configured, e.g. ("model", "layers", 0)
    spec: LayerSpec
    parameters: int
    outputs: int  # values the layer outputs per row (0 when not followed)


def configured_layers(loaded: LoadedConfig, finetune: bool) -> list[tuple[tuple, LayerSpec]]:
    """(key, spec) of each layer of the model a run builds: model.layers, with finetune.head applied
    for a finetune run (its kept layers come from the parent: their keys are model.layers's)."""
    config = loaded.config
    layers = [(("model", "layers", i), spec) for i, spec in enumerate(config.model.layers)]
    head = config.finetune.head
    if not finetune or head is None or head.replace > len(layers):
        return layers
    return kept_layers(layers, head.replace) + [(("finetune", "head", "layers", i), spec)
                                                for i, spec in enumerate(head.layers)]


def layer_sizes(layers: list[tuple[tuple, LayerSpec]], input_shape: tuple[int, ...]) -> list[LayerSize]:
    """Each layer's parameters and outputs per row, walking the feature width through the layers."""
    width: int | None = int(input_shape[-1]) if input_shape else None
    rows_per_row = math.prod(input_shape[:-1]) if input_shape else 1  # Dense acts on the last axis
    sizes = []
    for key, spec in layers:
        arguments = spec.arguments()
        parameters, kind = 0, spec.type
        if kind == "Dense" and _whole(arguments.get("units")):
            units = int(arguments["units"])
            bias = units if arguments.get("use_bias", True) else 0
            parameters, width = (width or 0) * units + bias, units
        elif kind == "Embedding" and _whole(arguments.get("input_dim")) and _whole(arguments.get("output_dim")):
            parameters, width = int(arguments["input_dim"]) * int(arguments["output_dim"]), None
        elif kind in ("BatchNormalization", "LayerNormalization", "PReLU") and width is not None:
            parameters = {"BatchNormalization": 4, "LayerNormalization": 2, "PReLU": 1}[kind] * width
        elif kind not in _KEEP_SHAPE:
            width = None  # a shape this walk does not follow
        sizes.append(LayerSize(key, spec, parameters, rows_per_row * width if width else 0))
    return sizes


def optimizer_slots(loaded: LoadedConfig) -> int:
    optimizer = loaded.config.optimizer
    name = optimizer.type.replace("_", "").lower()
    arguments = optimizer.arguments()
    if name == "sgd":
        return 1 if arguments.get("momentum") else 0
    if name == "rmsprop":
        return 1 + bool(arguments.get("momentum")) + bool(arguments.get("centered"))
    return _SLOTS.get(name, 2)


@dataclass(frozen=True)
class TrainingMemory:
    sizes: list[LayerSize]
    parameters: int
    slots: int
    activations: int  # bytes of layer outputs (and their gradients) for one training batch
    needed: int  # bytes in all: the lower bound described above


def training_memory(loaded: LoadedConfig, input_shape: tuple[int, ...], *, finetune: bool) -> TrainingMemory | None:
    """The estimate described above; None when the config has no layers to count."""
    sizes = layer_sizes(configured_layers(loaded, finetune), input_shape)
    if not sizes:
        return None
    parameters = sum(size.parameters for size in sizes)
    # a finetune run's kept parent layers (keys under model.layers) are counted as frozen
    trained = sum(size.parameters for size in sizes if not (finetune and size.key[0] == "model"))
    slots = optimizer_slots(loaded)
    batch = loaded.config.training.batch_size
    activations = 2 * batch * sum(size.outputs for size in sizes) * _BYTES
    needed = (parameters + trained * (1 + slots)) * _BYTES + activations
    return TrainingMemory(sizes, parameters, slots, activations, needed)


def check_fits_in_memory(loaded: LoadedConfig, input_shape: tuple[int, ...], *, finetune: bool) -> None:
    """Exit 2 at the largest layer's key when training the model cannot fit in this machine's memory."""
    estimate = training_memory(loaded, input_shape, finetune=finetune)
    if estimate is None:
        return
    sizes, parameters, slots, activations, needed = (estimate.sizes, estimate.parameters, estimate.slots,
                                                     estimate.activations, estimate.needed)
    batch = loaded.config.training.batch_size
    available = memory_limit()
    if available is None or needed <= available:
        return
    largest = max(sizes, key=lambda size: (size.parameters, size.outputs))
    argument = next((name for name in ("units", "output_dim", "input_dim") if name in largest.spec.arguments()), None)
    key = largest.key + ((argument,) if argument else ())
    raise ConfigError(loaded.problem(key, (
        f"training this model needs about {human_bytes(needed)} of memory but this machine has "
        f"{human_bytes(available)}: this {largest.spec.type} alone has {largest.parameters:,} parameters; counted: "
        f"{_BYTES} bytes per parameter ({parameters:,} in all) for the weights, their gradients and "
        f"{loaded.config.optimizer.type}'s {slots} slot(s), plus {human_bytes(activations)} of layer outputs for a "
        f"batch of {batch} — make the layer smaller" + (f" (fewer {argument})" if argument else "")
    )))


def memory_limit() -> int | None:
    """This machine's memory in bytes, or the container's limit when it is lower; None when unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def human_bytes(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if count < 1024 or unit == "PB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:,.1f} {unit}"
        count /= 1024
    return f"{count:,.1f} PB"


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
