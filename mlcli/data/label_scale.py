"""data.label_transform's statistics, fitted on the training split's regression targets, and the warning
for a target whose scale the default loss cannot learn (docs/contract.md §6).

`standard`: (y - mean) / std of the training split. `log`: log(1 + y) (log1p, so a target of 0 is
fine); a negative target is exit 3 naming its row. The model (mlcli.model.label_transform) undoes the
transform in its last layers, so what it outputs is always in the target's own units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlcli.errors import ConfigError, ConfigProblem, DataError

LARGE_SCALE = 1e3  # |mean| or std of a target above this: mse starts in the millions, and the default
#                    learning rate cannot move the last layer's bias that far in a few epochs


@dataclass(frozen=True)
class LabelTransform:
    kind: str  # standard | log
    mean: tuple[float, ...] = ()  # standard: one per target
    std: tuple[float, ...] = ()

    def record(self) -> dict:
        """run.json's `label_transform`."""
        if self.kind == "log":
            return {"kind": "log", "formula": "log(1 + y)"}
        return {"kind": "standard", "mean": list(self.mean), "std": list(self.std)}


def fit_label_transform(kind: str, train_y: np.ndarray) -> LabelTransform | None:
    """The transform's statistics from the training split only (no validation or test row)."""
    if kind == "none":
        return None
    if kind == "log":
        return LabelTransform("log")
    y = train_y.reshape(len(train_y), -1).astype(np.float64)
    std = y.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant target: only shifted
    return LabelTransform("standard", tuple(float(v) for v in y.mean(axis=0)), tuple(float(v) for v in std))


def check_log_targets(y: np.ndarray, role: str, spec: str, names: list[str]) -> None:
    """log(1 + y) needs y >= 0: the first negative target is exit 3, named by row (1 = first data row)."""
    values = y.reshape(len(y), -1)
    bad = np.argwhere(values < 0)
    if len(bad):
        row, col = int(bad[0][0]), int(bad[0][1])
        raise DataError(f"{role}: {spec}: label column {names[col] if col < len(names) else col!r}, row {row + 1}: "
                        f"{float(values[row, col])!r} is negative — data.label_transform: log trains on log(1 + y), "
                        "which needs targets >= 0",
                        hint="use data.label_transform: standard, or shift the target so it is >= 0")


def classification_refused(kind: str, where: str) -> ConfigError:
    return ConfigError(ConfigProblem("data.label_transform", f"{kind} transforms regression targets, and this "
                                     "label was read as classes", where),
                       hint="set data.label_transform: none, or data.task: regression for numeric targets")


def scale_warning(train_y: np.ndarray, names: list[str], kind: str) -> str | None:
    """A warning when a target's scale makes the loss on raw units useless, unless a transform is set."""
    if kind != "none":
        return None
    y = train_y.reshape(len(train_y), -1).astype(np.float64)
    for col in range(y.shape[1]):
        mean, std = float(y[:, col].mean()), float(y[:, col].std())
        if abs(mean) > LARGE_SCALE or std > LARGE_SCALE:
            name = names[col] if col < len(names) else col
            return (f"warning: the regression target {name!r} has mean {mean:.4g} and standard deviation {std:.4g}: "
                    "on that scale the loss starts huge and the model learns little in a few epochs — set "
                    "data.label_transform: standard (undone inside the model, so predictions stay in these units)")
    return None
