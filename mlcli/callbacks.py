"""Keras callbacks mlcli adds: history rows, best checkpoint, resume state, progress, divergence,
interrupts. Each keeps its state in plain data so that --resume can restore it exactly."""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mlcli import console, runs


def _better(mode: str, monitor: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    if mode == "auto":
        mode = "max" if any(k in monitor for k in ("acc", "auc", "precision", "recall", "f1", "r2")) else "min"
    return value > best if mode == "max" else value < best


def current_learning_rate(model) -> float:
    rate = model.optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(rate))


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and remembers where it happened."""

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.where: dict | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = {"epoch": self.epoch + 1, "step": int(batch) + 1, "loss": float(loss)}
            self.model.stop_training = True

    @property
    def diverged(self) -> bool:
        return self.where is not None


class InterruptGuard(keras.callbacks.Callback):
    """Ctrl-C / SIGTERM: finish the current step, stop, and let the run save its state.

    A second Ctrl-C raises KeyboardInterrupt at once.
    """

    def __init__(self):
        super().__init__()
        self.signal_name: str | None = None
        self._previous: dict = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. some test runners): leave signals alone
                pass

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        if self.model is not None:
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        if self.signal_name is not None:
            self.model.stop_training = True

    @property
    def interrupted(self) -> bool:
        return self.signal_name is not None


class EpochEnd(keras.callbacks.Callback):
    """At each finished, finite epoch: history row, best.keras, resume state — in that order.

    Everything is written atomically; a kill between two writes leaves each file whole, and the
    resume state (written last) never claims an epoch whose history row is missing.
    """

    def __init__(self, run_dir: Path, *, history: list[dict], monitor: str | None, mode: str,
                 best: dict | None, guard: DivergenceGuard, interrupt: InterruptGuard,
                 extra_state: callable, steps: int):
        super().__init__()
        self.run_dir = run_dir
        self.history = history
        self.monitor = monitor
        self.mode = mode
        self.best = best  # {"epoch", "monitor", "value"} or None
        self.guard = guard
        self.interrupt = interrupt
        self.extra_state = extra_state
        self.steps = steps
        self._started = 0.0
        self._completed_steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()
        self._completed_steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._completed_steps = int(batch) + 1

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.guard.diverged or not all(math.isfinite(float(v)) for v in logs.values()):
            return
        if self._completed_steps < self.steps:
            return  # stopped mid-epoch (interrupt): this epoch did not finish and is not recorded
        row: dict[str, Any] = {"epoch": epoch + 1}
        for key in sorted(logs, key=lambda k: (k.startswith("val_"), k != "loss" and k != "val_loss", k)):
            if key != "learning_rate":
                row[key] = float(logs[key])
        row["learning_rate"] = float(logs.get("learning_rate", current_learning_rate(self.model)))
        row["seconds"] = round(time.perf_counter() - self._started, 4)
        self.history.append(row)
        runs.write_history(self.run_dir / runs.HISTORY, self.history)
        if self.monitor and self.monitor in logs:
            value = float(logs[self.monitor])
            if _better(self.mode, self.monitor, value, self.best["value"] if self.best else None):
                self.best = {"epoch": epoch + 1, "monitor": self.monitor, "value": value}
                runs.save_model(self.model, self.run_dir / runs.BEST)
        save_resume_state(self.model, self.run_dir, {
            "epochs_completed": epoch + 1,
            "best": self.best,
            **self.extra_state(),
        })


def save_resume_state(model, run_dir: Path, progress: dict) -> None:
    """state/checkpoint.keras (weights and optimizer), then state/progress.json that points at it."""
    state = run_dir / runs.STATE
    runs.save_model(model, state / runs.STATE_MODEL)
    runs.write_json(state / runs.STATE_PROGRESS, progress)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's EarlyStopping whose patience counter and best value survive a resume."""

    def __init__(self, restored: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self._restored = restored

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._restored:
            self.wait = int(self._restored["wait"])
            self.best = self._restored["best"]
            self.best_epoch = int(self._restored["best_epoch"])
            weights = self._restored.get("best_weights")
            self.best_weights = [np.asarray(w) for w in weights] if weights is not None else None

    def snapshot(self) -> dict:
        best = self.best
        return {
            "wait": int(self.wait),
            "best": None if best is None else float(best),
            "best_epoch": int(self.best_epoch),
            "stopped_epoch": int(self.stopped_epoch),
        }


class Progress(keras.callbacks.Callback):
    """A live Rich bar on a terminal; one plain line per epoch otherwise; nothing with --quiet."""

    def __init__(self, epochs: int, steps: int):
        super().__init__()
        self.epochs = epochs
        self.steps = steps
        self.live = console.is_terminal() and not console.quiet()
        self._bar = None
        self._task = None
        self._started = 0.0

    def on_train_begin(self, logs=None):
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[metrics]}"), console=console.stderr(), transient=False,
            )
            self._bar.start()

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()
        if self._bar is not None:
            self._task = self._bar.add_task(f"epoch {epoch + 1}/{self.epochs}", total=self.steps, metrics="")

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is not None and self._task is not None:
            loss = (logs or {}).get("loss")
            self._bar.update(self._task, completed=int(batch) + 1,
                             metrics=f"loss {float(loss):.4f}" if loss is not None else "")

    def on_epoch_end(self, epoch, logs=None):
        text = format_metrics(logs or {})
        seconds = time.perf_counter() - self._started
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self.steps, metrics=text)
        elif not console.quiet():
            console.info(f"epoch {epoch + 1}/{self.epochs}  {text}  ({seconds:.1f}s)")

    def on_train_end(self, logs=None):
        if self._bar is not None:
            self._bar.stop()


def format_metrics(logs: dict) -> str:
    keys = sorted((k for k in logs if k != "learning_rate"), key=lambda k: (k.startswith("val_"), k != "loss" and k != "val_loss", k))
    return "  ".join(f"{k} {float(logs[k]):.4f}" for k in keys)
