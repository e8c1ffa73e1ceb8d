"""`mlcli train CONFIG --folds K` (docs/contract.md §8): K runs DIR/fold-1 … DIR/fold-K, run i validated on
the i-th of K folds of data.train (stratified for classification, seeded: data.fold in its config.yaml, so
`mlcli evaluate` rebuilds the same split), and DIR/cv.json with each fold's metrics, their mean and their
standard deviation. Each fold is a normal run: `--resume` continues or reports each one."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from mlcli import console
from mlcli.errors import UsageError
from mlcli.run import files

CV = "cv.json"


@dataclass
class CVResult:
    cv_dir: Path
    folds: list[dict]  # {"fold", "run_dir", "status", "epochs_completed", "metrics"}
    mean: dict[str, float]
    std: dict[str, float]

    def document(self) -> dict:
        return {"run_dir": str(self.cv_dir), "status": "completed", "folds": self.folds, "mean": self.mean,
                "std": self.std}


def fold_sets(index: int, of: int) -> list[str]:
    """The --set lines that make a config fold `index` of `of` (its validation is that fold)."""
    return [f"data.fold={{index: {index}, of: {of}}}", f"data.validation={1 / of!r}"]


def summarize(folds: list[dict]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and standard deviation (population, ddof 0: the K folds are all there is) of every metric that
    every fold reports."""
    names = [n for n in folds[0]["metrics"] if all(n in f["metrics"] for f in folds)]
    mean, std = {}, {}
    for name in names:
        values = [float(f["metrics"][name]) for f in folds]
        if all(math.isfinite(v) for v in values):
            mean[name] = statistics.fmean(values)
            std[name] = statistics.pstdev(values)
    return mean, std


def run_folds(kind_run, config: Path, output: Path | None, overrides: list[str], k: int, resume: bool,
              force: bool) -> CVResult:
    """Each fold through `kind_run(config, fold_dir, overrides, resume, force)` (train's own path to a run
    directory), then cv.json."""
    # deferred: config loading imports pydantic
    from mlcli.config import load_config
    from mlcli.run.output import default_run_dir

    if k < 2:
        raise UsageError(f"--folds {k}: cross-validation needs at least 2 folds", hint="use e.g. --folds 5")
    if config is None or config.is_dir():
        raise UsageError("--folds needs CONFIG (a YAML file)", hint="mlcli train CONFIG --folds 5 [--output DIR]")
    loaded = load_config(config, overrides)
    name = loaded.config.name or "run"
    if output is None:
        cv_dir = Path("runs") / name if resume else default_run_dir(name)
    else:
        cv_dir = output
        if (cv_dir / CV).is_file() and not (resume or force):
            raise UsageError(f"--output {cv_dir} already holds a cross-validation",
                             hint="pass --resume to continue or report it, --force to replace it, or another --output")
    folds = []
    for index in range(1, k + 1):
        fold_dir = cv_dir / f"fold-{index}"
        console.info(f"fold {index}/{k}: {fold_dir}")
        result = kind_run(fold_dir, overrides + fold_sets(index, k), resume)
        folds.append({"fold": index, "run_dir": str(fold_dir), "status": result.status,
                      "epochs_completed": result.epochs_completed, "metrics": dict(result.metrics)})
    mean, std = summarize(folds)
    result = CVResult(cv_dir, folds, mean, std)
    files.write_json(cv_dir / CV, {"folds": k, "runs": folds, "mean": mean, "std": std})
    return result
