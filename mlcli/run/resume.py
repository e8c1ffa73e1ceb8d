"""What --resume needs, saved so that a resumed run is bit-identical to an uninterrupted one.

A resume point is (epoch, step): the number of finished epochs and the steps already taken in the
next one. It is one .npz of raw variable values — every model variable (weights, and the
random-generator states of layers such as Dropout, which a .keras file would not keep), every
optimizer variable (its step count and slots), the running metric totals of a half-finished epoch,
and EarlyStopping's best weights — written in a few milliseconds. Resuming rebuilds the same model
the run started with and assigns these values. `progress.json` is written last and names the file it
belongs to, so a kill at any moment leaves the previous point intact.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from pathlib import Path

import numpy as np

from mlcli.errors import UsageError
from mlcli.run import files


def snapshot_point(model, *, partial_metrics: bool, early_stopping_weights: list | None,
                   buffers: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """A resume point's values, copied now: training may go on while they are written.

    `buffers`, the arrays of an earlier snapshot that nothing reads any more, are filled in place where
    their shapes and dtypes still fit. New memory costs more than the copy on some machines: at 10M
    parameters the 120 MB of fresh arrays took 0.5-0.9 s at each epoch's end, against 0.01-0.03 s
    copied into arrays already in use (docs/performance.md, "Model scale")."""
    buffers = buffers if buffers is not None else {}
    arrays: dict[str, np.ndarray] = {}
    groups = [("model", list(model.variables)), ("optimizer", list(model.optimizer.variables))]
    if partial_metrics:
        groups.append(("metric", list(model.metrics_variables)))
    values = iter(_read_all(model, [variable for _, variables in groups for variable in variables]))
    for prefix, variables in groups:
        for index in range(len(variables)):
            key = f"{prefix}_{index}"
            arrays[key] = _owned(next(values), buffers.get(key))
    for index, weight in enumerate(early_stopping_weights or []):
        arrays[f"best_{index}"] = np.asarray(weight)  # EarlyStopping replaces its list, never changes it
    return arrays


def _owned(value: np.ndarray, buffer: np.ndarray | None = None) -> np.ndarray:
    """An array of its own: one that views a tensor's memory is copied (into `buffer` when it fits), so
    that what the background writer saves cannot be the memory of a tensor TensorFlow may reuse while
    training goes on."""
    if value.flags.owndata:
        return value
    if buffer is not None and buffer.shape == value.shape and buffer.dtype == value.dtype:
        np.copyto(buffer, value)
        return buffer
    return value.copy()


def write_point(run_dir: Path, progress: dict, arrays: dict[str, np.ndarray]) -> None:
    """The arrays, then progress.json naming them (the point exists once that is written), then the
    files of older points."""
    state = run_dir / files.STATE
    name = f"epoch{progress['epochs_completed']:05d}-step{progress.get('step', 0):07d}.npz"
    with files.replacing(state / name) as tmp, open(tmp, "wb") as handle:
        write_npz(handle, arrays)  # straight into the temporary file: no second in-memory copy of the state
    files.fault_point("state-before-progress")
    files.write_json(state / files.STATE_PROGRESS, {**progress, "arrays": name})
    for stale in state.iterdir():
        if stale.name not in (name, files.STATE_PROGRESS) and not stale.name.startswith("."):
            stale.unlink(missing_ok=True)


def write_npz(handle, arrays: dict[str, np.ndarray]) -> None:
    """The file np.savez writes (np.load reads it), each array written from its own memory: np.savez
    first copies an array into 16 MB byte strings when the file is a zip member, and new memory costs
    more than the copy on some machines (snapshot_point)."""
    import zipfile  # deferred: only a run that saves its state writes one

    with zipfile.ZipFile(handle, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            array = array if array.flags.c_contiguous else np.array(array, order="C")
            if array.dtype.hasobject:
                raise TypeError(f"{name}: a resume point holds numbers only, not {array.dtype}")
            with archive.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, np.lib.format.header_data_from_array_1_0(array))
                member.write(array.reshape(-1).view(np.uint8).data)


class PointWriter:
    """Writes resume points off the training thread, one at a time.

    The values are copied when the point is taken (`save`), so training goes on while the .npz is
    written and synced: at 10M parameters that is 120 MB (weights and Adam's two slots) and one to
    several seconds of disk time at each epoch end. A kill at any moment still leaves the previous
    point intact (progress.json is written last, by the same thread). At most one point is in flight:
    `save` first waits for the previous one, then copies the new values into its arrays, so memory
    holds one copy at most, allocated once. A write's error is
    raised by the next `save` or by `wait`, which the run calls before it records its outcome.
    """

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._last: dict[str, np.ndarray] = {}  # the last point's arrays: the next one is copied into them

    def save(self, model, progress: dict, *, partial_metrics: bool, early_stopping_weights: list | None,
             wait: bool = False) -> None:
        self.wait()  # the last point is on disk: its arrays can be filled again
        arrays = snapshot_point(model, partial_metrics=partial_metrics, early_stopping_weights=early_stopping_weights,
                                buffers=self._last)
        self._last = arrays
        progress = dict(progress)

        def write() -> None:
            try:
                write_point(self.run_dir, progress, arrays)
            except BaseException as exc:  # noqa: BLE001 — raised in the training thread by wait()
                self._error = exc

        # The thread writes with this command's settings (they live in context variables).
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(write,),
                                        name="mlcli-resume-point", daemon=True)
        self._thread.start()
        if wait:
            self.wait()

    def wait(self) -> None:
        """Until the point in flight is on disk; raises its error, if writing it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error


def _read_all(model, variables: list) -> list[np.ndarray]:
    """Every variable's value, read in one TensorFlow call: one eager read per variable costs about
    0.1 ms, 50-60 ms for a MobileNetV3Small and its optimizer's 490 variables at every epoch's end
    (docs/performance.md). The function is kept for the model while its variables stay the same ones."""
    import tensorflow as tf  # deferred: imports TensorFlow (a run saving its state has it loaded)

    if tf.distribute.has_strategy() or getattr(model.distribute_strategy, "num_replicas_in_sync", 1) > 1:
        return [np.asarray(variable.numpy()) for variable in variables]  # mirrored variables: one by one
    key = tuple(id(variable) for variable in variables)
    cached = _READERS.get(model)
    if cached is None or cached[0] != key:
        cached = (key, tf.function(lambda: [tf.identity(variable.value) for variable in variables], autograph=False))
        _READERS[model] = cached
    return [np.asarray(value) for value in cached[1]()]


_READERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (its variables' ids, the reader)


def read_progress(run_dir: Path) -> dict | None:
    """The last complete resume point, or None when the run never reached one."""
    path = run_dir / files.STATE / files.STATE_PROGRESS
    if not path.is_file():
        return None
    progress = files.read_json(path)
    if not (run_dir / files.STATE / progress.get("arrays", "")).is_file():
        return None
    return progress


def restore_point(model, run_dir: Path, progress: dict) -> dict:
    """Assign a resume point's values to `model`, compiled as the run compiled it; returns the extras
    (metric totals, EarlyStopping's best weights)."""
    return assign_point(model, load_point(run_dir, progress), run_dir)


def load_point(run_dir: Path, progress: dict) -> dict[str, np.ndarray]:
    """A resume point's arrays by name (model_N, optimizer_N, metric_N, best_N)."""
    with np.load(run_dir / files.STATE / progress["arrays"], allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def assign_point(model, arrays: dict[str, np.ndarray], run_dir: Path) -> dict:
    """Assign a resume point's arrays (from `load_point`, here or on the chief of a multi-worker run)
    to `model`; returns the extras (metric totals, EarlyStopping's best weights)."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    for prefix, variables in (("model", model.variables), ("optimizer", model.optimizer.variables)):
        saved = sorted((k for k in arrays if k.startswith(prefix + "_")), key=lambda k: int(k.split("_")[1]))
        if len(saved) != len(variables) or any(arrays[k].shape != tuple(v.shape) for k, v in zip(saved, variables)):
            raise UsageError(
                f"{run_dir}: the saved state does not fit the model this config builds "
                f"({len(saved)} saved {prefix} variables, {len(variables)} now) — was mlcli upgraded mid-run?",
                hint="start the run again (--force), or go back to the mlcli version that started it",
            )
        for key, variable in zip(saved, variables):
            variable.assign(arrays[key])
    return {k: v for k, v in arrays.items() if k.startswith(("metric_", "best_"))}


def restore_partial_metrics(model, extras: dict) -> None:
    """Put back the running totals of a half-finished epoch (call after Keras resets the metrics)."""
    for index, variable in enumerate(model.metrics_variables):
        key = f"metric_{index}"
        if key in extras:
            variable.assign(extras[key])


def early_stopping_weights(extras: dict) -> list | None:
    keys = sorted((k for k in extras if k.startswith("best_")), key=lambda k: int(k.split("_")[1]))
    return [extras[k] for k in keys] or None


def describe(progress: dict | None) -> str:
    if not progress:
        return "no saved state (starting from the beginning)"
    step = progress.get("step", 0)
    where = f"epoch {progress['epochs_completed']} finished" if not step else (
        f"{progress['epochs_completed']} epoch(s) and {step} step(s) of the next")
    return f"resuming after {where}"
