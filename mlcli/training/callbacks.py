"""Keras callbacks mlcli adds: history rows, best checkpoint, resume state, progress, divergence,
interrupts. Each keeps its state in plain data so that --resume can restore it exactly."""

from __future__ import annotations

import math
import signal
import struct
import time
from pathlib import Path
from typing import Any

import keras

from mlcli import console
from mlcli.checkpoint.archive import save_model
from mlcli.heartbeat import Heartbeat
from mlcli.run import files, resume
from mlcli.run.history import write_history


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

    def __init__(self, steps: int, first_step: int = 0):
        super().__init__()
        self.epoch = 0
        self.steps = steps
        self.offset = first_step  # steps taken before a mid-epoch resume
        self.where: dict | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.offset = 0

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            # str: JSON has no inf/nan, and run.json must stay readable by jq.
            self.where = {"epoch": self.epoch + 1, "step": min(int(batch) + 1 + self.offset, self.steps),
                          "loss": str(float(loss))}
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


class StateKeeper(keras.callbacks.Callback):
    """Writes history.csv, best.keras and the resume state; knows how far the run has got.

    At each finished, finite epoch: the history row, best.keras when the monitor improved, then the
    resume point — in that order, each file atomically, so the resume point (written last) never
    claims an epoch whose history row is missing. Every `every_steps` steps, and when a signal
    asks to stop, a mid-epoch resume point (with the epoch's running metric totals) as well.
    """

    def __init__(self, run_dir: Path, *, history: list[dict], monitor: str | None, mode: str,
                 best: dict | None, guard: DivergenceGuard, interrupt: InterruptGuard, steps: int,
                 every_steps: int | None, early_stopping=None, first_step: int = 0, facts: dict | None = None):
        super().__init__()
        self.run_dir = run_dir
        self.facts = facts  # mlcli.json for best.keras (save_model)
        self.history = history
        self.monitor = monitor
        self.mode = mode
        self.best = best  # {"epoch", "monitor", "value"} or None
        self.guard = guard
        self.interrupt = interrupt
        self.steps = steps
        self.every_steps = every_steps
        self.early_stopping = early_stopping
        self.offset = first_step  # steps already taken in the first epoch (mid-epoch resume)
        self.epoch = 0
        self.step = first_step  # steps finished in the current epoch
        self._started = 0.0
        self.points = resume.PointWriter(run_dir)  # resume points, written off the training thread

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.step = self.offset
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1, Keras reports every Nth step: a save is due when the step
        # count crosses a multiple of every_steps, not only when it lands on one.
        # Keras reports begin + steps_per_execution - 1, even when the epoch's last call is shorter.
        previous, self.step = self.step, min(int(batch) + 1 + self.offset, self.steps)
        if self.guard.diverged:
            return
        if self.interrupt.interrupted:
            if self.step < self.steps:
                self._save(step=self.step, wait=True)
            self.model.stop_training = True
        elif self.every_steps and self.step // self.every_steps > previous // self.every_steps \
                and self.step < self.steps:
            self._save(step=self.step)

    def on_epoch_end(self, epoch, logs=None):
        self.offset = 0
        logs = dict(logs or {})
        if self.guard.diverged or not all(math.isfinite(float(v)) for v in logs.values()):
            return
        if self.step < self.steps:
            return  # stopped mid-epoch (a signal): the epoch did not finish and is not recorded
        row: dict[str, Any] = {"epoch": epoch + 1}
        for key in sorted(logs, key=metric_order):
            if key != "learning_rate":
                row[key] = float(logs[key])
        row["learning_rate"] = float(logs.get("learning_rate", current_learning_rate(self.model)))
        row["seconds"] = round(time.perf_counter() - self._started, 4)
        self.history.append(row)
        write_history(self.run_dir / files.HISTORY, self.history)
        if self.monitor and self.monitor in logs:
            value = float(logs[self.monitor])
            if _better(self.mode, self.monitor, value, self.best["value"] if self.best else None):
                self.best = {"epoch": epoch + 1, "monitor": self.monitor, "value": value}
                save_model(self.model, self.run_dir / files.BEST, self.facts)
        self._save(step=0, epochs_completed=epoch + 1)

    def _save(self, step: int, epochs_completed: int | None = None, wait: bool = False) -> None:
        es = self.early_stopping
        progress = {
            "epochs_completed": self.epoch if epochs_completed is None else epochs_completed,
            "step": step,
            "best": self.best,
            "early_stopping": es.snapshot() if es is not None else None,
        }
        self.points.save(self.model, progress, partial_metrics=step > 0,
                         early_stopping_weights=es.best_weights if es is not None else None, wait=wait)

    def wait(self) -> None:
        """Until the last resume point is on disk (before the run records how it ended)."""
        self.points.wait()


class SetEpoch(keras.callbacks.Callback):
    """Tells the training data which epoch starts, so that its order is that epoch's."""

    def __init__(self, variable):
        super().__init__()
        self.variable = variable

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(epoch)


class RestoreMetrics(keras.callbacks.Callback):
    """Mid-epoch resume: after Keras resets the metrics at the epoch's start, put back the totals
    of the steps taken before the interruption, so the epoch's logged metrics are unchanged."""

    def __init__(self, extras: dict):
        super().__init__()
        self.extras = extras

    def on_epoch_begin(self, epoch, logs=None):
        resume.restore_partial_metrics(self.model, self.extras)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's EarlyStopping whose patience counter, best value and best weights survive a resume.

    It is reused across the two `fit` calls of a mid-epoch resume, so it initialises once, and it
    does not restore the best weights at the end of a `fit` call: the run does that once, at the end.
    """

    def __init__(self, restored: dict | None = None, restored_weights: list | None = None, **kwargs):
        super().__init__(**kwargs)
        self._restored = restored
        self._restored_weights = restored_weights
        self._initialised = False

    def on_train_begin(self, logs=None):
        if self._initialised:
            return
        self._initialised = True
        super().on_train_begin(logs)
        if self._restored:
            self.wait = int(self._restored["wait"])
            self.best = self._restored["best"]
            self.best_epoch = int(self._restored["best_epoch"])
            self.stopped_epoch = int(self._restored.get("stopped_epoch", 0))
            self.best_weights = self._restored_weights

    def on_train_end(self, logs=None):
        pass

    def restore_best(self) -> int | None:
        """Put the best epoch's weights back (restore_best_weights); returns that epoch (1-based)."""
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            return int(self.best_epoch) + 1
        return None

    def snapshot(self) -> dict:
        best = self.best
        return {
            "wait": int(self.wait),
            "best": None if best is None or not math.isfinite(float(best)) else float(best),
            "best_epoch": int(self.best_epoch),
            "stopped_epoch": int(self.stopped_epoch),
            "stopped": bool(self.stopped_epoch),
        }


class EpochSummaries(keras.callbacks.Callback):
    """TensorBoard logs, one point per epoch: DIR/logs/train and DIR/logs/validation with
    `epoch_<metric>` scalars and the learning rate, the layout Keras's TensorBoard callback uses.

    Written by TensorBoard's own event-file writer, each scalar the event `tf.summary.scalar` writes
    (a float32 scalar tensor under the "scalars" plugin): Keras's callback also hooks every batch and
    imports TensorFlow's legacy Keras package, and tf.summary's first eager write costs more than the
    rest of a small run's logging together (docs/performance.md, "Start-up and overhead").
    """

    def __init__(self, log_dir: Path):
        super().__init__()
        self.log_dir = log_dir
        self._writers: dict = {}

    def on_train_begin(self, logs=None):
        if not self._writers:  # once, though a mid-epoch resume calls fit twice
            # deferred: TensorBoard's writer, only for a run that trains
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            with files.writing(self.log_dir):
                self._writers = {name: EventFileWriter(str(self.log_dir / name), filename_suffix=".v2")
                                 for name in ("train", "validation")}

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        logs.setdefault("learning_rate", current_learning_rate(self.model))
        with files.writing(self.log_dir):
            for key, value in logs.items():
                side, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
                self._writers[side].add_event(_scalar_event(f"epoch_{name}", float(value), epoch))
            for writer in self._writers.values():
                writer.flush()

    def close(self) -> None:
        with files.writing(self.log_dir):
            for writer in self._writers.values():
                writer.close()
        self._writers = {}


def _scalar_event(tag: str, value: float, step: int):
    """The event tf.summary.scalar(tag, value, step=step) writes."""
    # deferred: TensorBoard's protocol buffers, only for a run that trains
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorboard.plugins.scalar import metadata  # deferred: as above

    try:
        content = struct.pack("<f", value)
    except OverflowError:  # beyond float32's range: what a cast to float32 gives
        content = struct.pack("<f", math.copysign(math.inf, value))
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=tensor_shape_pb2.TensorShapeProto(),
                                    tensor_content=content)
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag=tag, tensor=tensor, metadata=metadata.create_summary_metadata(display_name=None, description=None))])
    return event_pb2.Event(wall_time=time.time(), step=step, summary=summary)


class Progress(keras.callbacks.Callback):
    """A live Rich bar on a terminal; one plain line per epoch otherwise, and with `every` (--progress-every)
    a line at least that often inside long epochs; nothing with --quiet."""

    def __init__(self, epochs: int, steps: int, first_step: int = 0, every: float | None = None):
        super().__init__()
        self.epochs = epochs
        self.steps = steps
        self.offset = first_step
        self.live = console.is_terminal() and not console.quiet()
        self._bar = None
        self._task = None
        self._started = time.perf_counter()
        self._done = first_step  # steps finished in the current epoch
        self._epoch = 0
        self._loss: float | None = None
        self._heartbeat = Heartbeat(every, self._describe)

    def _describe(self) -> str:
        loss = f"  loss {self._loss:.4f}" if self._loss is not None else ""
        return (f"epoch {self._epoch + 1}/{self.epochs}  step {self._done}/{self.steps}{loss}  "
                f"({time.perf_counter() - self._started:.1f}s)")

    def on_train_begin(self, logs=None):
        self._heartbeat.start()
        if self.live and self._bar is None:  # once, though a mid-epoch resume calls fit twice
            # deferred: the live bar is drawn only on a terminal
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[metrics]}"), console=console.stderr(), transient=False,
            )
            self._bar.start()

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()
        self._epoch, self._loss = epoch, None
        if self._bar is not None:
            self._task = self._bar.add_task(f"epoch {epoch + 1}/{self.epochs}", total=self.steps, metrics="")

    def on_train_batch_end(self, batch, logs=None):
        self._done = min(int(batch) + 1 + self.offset, self.steps)
        loss = (logs or {}).get("loss")
        self._loss = float(loss) if loss is not None else None
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self._done,
                             metrics=f"loss {float(loss):.4f}" if loss is not None else "")

    def on_epoch_end(self, epoch, logs=None):
        self.offset = 0
        finished, self._done = self._done >= self.steps, 0
        if not finished:  # stopped mid-epoch by a signal: the epoch is not recorded, so not shown as done
            return
        text = format_metrics(logs or {})
        seconds = time.perf_counter() - self._started
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self.steps, metrics=text)
        elif not console.quiet():
            console.info(f"epoch {epoch + 1}/{self.epochs}  {text}  ({seconds:.1f}s)")
            self._heartbeat.printed()

    def close(self) -> None:
        self._heartbeat.stop()
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def metric_order(key: str) -> tuple:
    """loss first, then metrics alphabetically; validation after training."""
    return (key.startswith("val_"), key not in ("loss", "val_loss"), key)


def format_metrics(logs: dict) -> str:
    keys = sorted((k for k in logs if k != "learning_rate"), key=metric_order)
    return "  ".join(f"{k} {float(logs[k]):.4f}" for k in keys)
