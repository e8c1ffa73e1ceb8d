"""Floating-point operations of a built model's forward pass, per example and per layer.

Convention: one multiply-add is 2 FLOPs (the usual count, as in the scaling-law papers), biases
and activations are not counted (they are a few percent of a Dense or a convolution). Counted:

- Dense: 2 x inputs x units for every position it acts on (Dense acts on the last axis);
- Conv1D/Conv2D/Conv3D: 2 x kernel volume x input channels / groups x output channels for every
  output position; DepthwiseConv2D: 2 x kernel area x channels x multiplier per output position;
  SeparableConv2D: its depthwise and pointwise parts;
- Embedding: 0 (a table look-up, no multiplication);
- every other layer (pooling, normalization, dropout, activations, preprocessing): 0;
- a convolution whose output size is not fixed (inside a KerasHub backbone built for any image size): 0,
  so such a backbone's FLOPs are a lower bound.

Training one example costs about 3 times its forward pass (the backward pass computes gradients
for both the inputs and the weights of each layer: about twice the forward work), so an epoch is
about 3 x forward FLOPs x training rows — the figure `mlcli validate --deep` and `train` show.
"""

from __future__ import annotations

import math

TRAINING_FACTOR = 3  # forward + backward (about 2x forward) per training example


_CONVOLUTIONS = ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D", "SeparableConv2D")


def _positions(shape) -> int:
    """Output positions of a layer acting on the last axis: the product of every axis but the
    batch and the last (1 for a plain (batch, units) output)."""
    dims = [int(d) for d in tuple(shape)[1:-1] if d is not None]
    return math.prod(dims) if dims else 1


def layer_flops(layer) -> int:
    """One layer's forward FLOPs for one example (0 for a layer this does not count)."""
    kind = type(layer).__name__
    try:
        out_shape = layer.output.shape
        in_shape = layer.input.shape
    except (AttributeError, ValueError):
        return 0
    if isinstance(in_shape, (list, tuple)) and in_shape and isinstance(in_shape[0], (list, tuple)):
        return 0  # several inputs: not a layer counted here
    if kind == "Dense" and in_shape[-1] is not None:
        return 2 * int(in_shape[-1]) * int(layer.units) * _positions(out_shape)
    if kind in _CONVOLUTIONS and any(d is None for d in tuple(out_shape)[1:]):
        return 0  # its output size is known only per input (a KerasHub backbone built for any image size)
    if kind in ("Conv1D", "Conv2D", "Conv3D"):
        channels_last = getattr(layer, "data_format", "channels_last") == "channels_last"
        c_in = int(in_shape[-1] if channels_last else in_shape[1])
        groups = int(getattr(layer, "groups", 1) or 1)
        spatial = out_shape[1:-1] if channels_last else out_shape[2:]
        kernel = math.prod(int(k) for k in layer.kernel_size)
        return 2 * kernel * (c_in // groups) * int(layer.filters) * math.prod(int(d) for d in spatial)
    if kind == "DepthwiseConv2D":
        c_in = int(in_shape[-1])
        kernel = math.prod(int(k) for k in layer.kernel_size)
        return 2 * kernel * c_in * int(layer.depth_multiplier) * math.prod(int(d) for d in out_shape[1:-1])
    if kind == "SeparableConv2D":
        c_in = int(in_shape[-1])
        kernel = math.prod(int(k) for k in layer.kernel_size)
        positions = math.prod(int(d) for d in out_shape[1:-1])
        depthwise = 2 * kernel * c_in * int(layer.depth_multiplier) * positions
        return depthwise + 2 * c_in * int(layer.depth_multiplier) * int(layer.filters) * positions
    if hasattr(layer, "layers") and kind not in ("Embedding",):  # a nested model (a backbone)
        return sum(layer_flops(inner) for inner in layer.layers)
    return 0


def model_flops(layers: list) -> int:
    """Forward FLOPs per example of these layers together."""
    return sum(layer_flops(layer) for layer in layers)


def epoch_flops(forward_per_example: int, training_rows: int) -> int:
    """About what one training epoch costs: 3 x the forward pass x the training rows."""
    return TRAINING_FACTOR * forward_per_example * training_rows


def human_flops(count: float) -> str:
    for unit in ("", "K", "M", "G", "T", "P"):
        if abs(count) < 1000 or unit == "P":
            return f"{count:,.0f} FLOPs" if unit == "" else f"{count:,.1f} {unit}FLOPs"
        count /= 1000
    return f"{count:,.1f} PFLOPs"
