"""explain's pictures: importance.png (a bar per feature) and saliency.png (inputs beside their
attribution maps)."""

from __future__ import annotations

import numpy as np

from mlcli.use.plots import _figure, _png

_MOST_BARS = 30  # features drawn; the rest are in the table and --json


def importance_png(rows: list[dict], title: str, xlabel: str) -> bytes:
    """rows: {"feature", "mean", "std"} sorted most important first; error bars: the std over repeats."""
    shown = rows[:_MOST_BARS]
    figure = _figure(7.0, 1.2 + 0.3 * len(shown))
    axes = figure.add_subplot()
    positions = np.arange(len(shown))[::-1]
    axes.barh(positions, [r["mean"] for r in shown], xerr=[r.get("std", 0.0) for r in shown], color="#4878a8",
              ecolor="#333333", capsize=3)
    axes.set_yticks(positions, [str(r["feature"]) for r in shown])
    axes.axvline(0.0, color="#888888", linewidth=0.8)
    axes.set_xlabel(xlabel)
    axes.set_title(title if len(rows) <= _MOST_BARS else f"{title} (the {_MOST_BARS} most important)")
    return _png(figure)


def _shown_image(row: np.ndarray) -> tuple[np.ndarray, str | None]:
    """An input row as matplotlib draws it: (H, W) grey or (H, W, 3) colour, scaled to [0, 1]."""
    image = row.astype(np.float64)
    low, high = float(image.min()), float(image.max())
    if low >= 0.0 and 1.0 < high <= 255.0:  # pixels in [0, 255], as image inputs take them: shown as they are
        image = image / 255.0
    elif not (low >= 0.0 and high <= 1.0):
        image = (image - low) / (high - low) if high > low else np.zeros_like(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        return image[..., 0], "gray"
    if image.ndim == 3 and image.shape[-1] >= 3:
        return image[..., :3], None
    return image, "gray"


def saliency_png(inputs: np.ndarray, attributions: np.ndarray, captions: list[str]) -> bytes:
    """One line per row: the input, then its attribution map (summed over channels; red adds to the
    output explained, blue takes away, on a scale symmetric around 0 per row)."""
    count = len(inputs)
    figure = _figure(6.0, 2.6 * count + 0.4)
    for index in range(count):
        image, cmap = _shown_image(inputs[index])
        left = figure.add_subplot(count, 2, 2 * index + 1)
        left.imshow(image, cmap=cmap)
        left.set_title(captions[index], fontsize=8)
        left.axis("off")
        attribution = attributions[index]
        amap = attribution.sum(axis=-1) if attribution.ndim == 3 else attribution
        bound = float(np.abs(amap).max()) or 1.0
        right = figure.add_subplot(count, 2, 2 * index + 2)
        shown = right.imshow(amap, cmap="bwr", vmin=-bound, vmax=bound)
        right.set_title("integrated gradients", fontsize=8)
        right.axis("off")
        figure.colorbar(shown, ax=right, fraction=0.046)
    return _png(figure)
