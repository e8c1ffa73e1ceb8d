"""Typed tables on two real public tables (issue 16, item 9): the bundled Palmer penguins
(classification) and auto-mpg (regression), trained by their shipped configs.

(a) mlcli's test accuracy / test MAE beside scikit-learn's HistGradientBoosting with native categorical
    support (categories as category dtype, missing values as NaN), on the same fixed train/test split;
    medians over seeds 42, 43, 44.
(b) the cost of typed preprocessing: the same body, epochs and label handling trained on the raw table
    (typed features: lookups, normalization and was-missing columns inside the model) and on a
    pre-encoded numeric CSV made here (one-hot categories with a missing category, standardised numbers
    with the training median filled in and a was-missing column: what the typed block computes). The
    time compared is the training epochs' own seconds (history.csv) — the whole process, start-up and
    the fitting of vocabularies included, is reported beside it. Target: typed <= 1.3x pre-encoded.

    python bench/typed_tables.py [--rounds 3]      # or, within make bench: bench/run.py --only typed
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).absolute().parent))
sys.path.insert(1, str(Path(__file__).absolute().parent.parent))

import common
from common import REPO, WORK, median, run

SEED = 42
TIMING_EPOCHS = 30
DATASETS = REPO / "mlcli" / "datasets"
TABLES = {
    "penguins": {"config": "configs/penguins.yaml", "label": "species", "task": "classification",
                 "numeric": ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"],
                 "categorical": ["island", "sex"], "exclude": []},
    "autompg": {"config": "configs/autompg.yaml", "label": "mpg", "task": "regression",
                "numeric": ["cylinders", "displacement", "horsepower", "weight", "acceleration", "model_year"],
                "categorical": ["origin"], "exclude": ["name"]},
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _read(name: str, split: str):
    import pandas as pd

    return pd.read_csv(DATASETS / f"{name}_{split}.csv.gz", keep_default_na=False, na_values=[""])


# ---- (a) scikit-learn's gradient boosting ----------------------------------------------------------

def boosting_score(name: str, seed: int) -> float:
    """Test accuracy (classification) or test MAE (regression) of HistGradientBoosting, categories native."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    spec = TABLES[name]
    train, test = _read(name, "train"), _read(name, "test")
    columns = spec["numeric"] + spec["categorical"]

    def features(frame):
        out = frame[columns].copy()
        for column in spec["categorical"]:
            out[column] = out[column].astype("category").cat.set_categories(
                sorted(train[column].dropna().unique()))
        return out

    kind = HistGradientBoostingClassifier if spec["task"] == "classification" else HistGradientBoostingRegressor
    model = kind(categorical_features="from_dtype", random_state=seed)
    model.fit(features(train), train[spec["label"]])
    predicted = model.predict(features(test))
    if spec["task"] == "classification":
        return float(np.mean(predicted == test[spec["label"]].to_numpy()))
    return float(np.mean(np.abs(predicted - test[spec["label"]].to_numpy())))


# ---- (b) the pre-encoded table ---------------------------------------------------------------------

def encoded_tables(name: str) -> tuple[Path, Path]:
    """train/test CSVs of numbers only, encoded with statistics of the training split."""
    import numpy as np
    import pandas as pd

    spec = TABLES[name]
    train, test = _read(name, "train"), _read(name, "test")
    out_dir = WORK / "data" / "typed_tables"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, frame in (("train", train), ("test", test)):
        columns = {}
        for column in spec["numeric"]:
            values = frame[column].astype("float64")
            fitted = train[column].astype("float64")
            filled = values.fillna(fitted.median())
            columns[column] = (filled - fitted.mean()) / (fitted.std(ddof=0) or 1.0)
            if fitted.isna().any():  # as the typed block: a was-missing column when training had gaps
                columns[f"{column}_missing"] = values.isna().astype("float64")
        for column in spec["categorical"]:
            values = frame[column].fillna("(missing)")
            columns[f"{column}=(unseen)"] = 0.0  # the typed block's out-of-vocabulary slot: same input width
            for value in sorted(train[column].fillna("(missing)").unique()):
                columns[f"{column}={value}"] = (values == value).astype("float64")
        columns[spec["label"]] = frame[spec["label"]]
        path = out_dir / f"{name}_encoded_{split}.csv"
        pd.DataFrame(columns).to_csv(path, index=False, float_format="%.6g")
        paths.append(path)
    assert np.isfinite(pd.read_csv(paths[0]).drop(columns=[spec["label"]]).to_numpy(dtype=float)).all()
    return paths[0], paths[1]


# ---- runs ------------------------------------------------------------------------------------------

def mlcli_train(config: Path, out: Path, seed: int, extra: list[str]) -> dict:
    done = run([*common.mlcli_command(), "train", str(config), "--output", str(out), "--force", "--json",
                "--seed", str(seed), *extra])  # a failure raises, with its stderr
    document = json.loads(done["stdout"])
    with open(out / "history.csv") as handle:
        header = handle.readline().strip().split(",")
        epoch_seconds = [float(line.split(",")[header.index("seconds")]) for line in handle if line.strip()]
    return {"process_seconds": done["seconds"], "epoch_seconds": sum(epoch_seconds), "epochs": len(epoch_seconds),
            "steady_seconds": sum(epoch_seconds[1:]),  # epoch 1 also traces the graph
            "metrics": document["metrics"]}


def bench_table(name: str, rounds: int) -> dict:
    spec = TABLES[name]
    metric = "test_accuracy" if spec["task"] == "classification" else "test_mae"
    config = REPO / spec["config"]
    train, test = encoded_tables(name)
    fixed = ["--set", f"training.epochs={TIMING_EPOCHS}", "--set", "training.early_stopping=null"]
    plain = ["--set", f"data.train={train}", "--set", f"data.test={test}", "--set", "data.features=null",
             "--set", "data.exclude=[]", "--set", "data.normalize=none", "--set", "data.missing=error"]
    runs: dict[str, list] = {"shipped": [], "boosting": [], "typed": [], "encoded": []}
    for index in range(rounds):
        seed = SEED + index
        jobs = {"shipped": [], "typed": fixed, "encoded": fixed + plain}
        for key in (list(jobs) if index % 2 == 0 else list(reversed(jobs))):  # interleaved, as bench/run.py
            log(f"{name}: {key}, seed {seed}")
            runs[key].append(mlcli_train(config, WORK / "runs" / f"{name}-{key}-{index}", seed, jobs[key]))
        runs["boosting"].append(boosting_score(name, seed))
    result = {
        "task": spec["task"], "metric": metric, "runs": runs,
        "mlcli": median(r["metrics"][metric] for r in runs["shipped"]),
        "boosting": median(runs["boosting"]),
        "typed_epoch_seconds": median(r["epoch_seconds"] for r in runs["typed"]),
        "encoded_epoch_seconds": median(r["epoch_seconds"] for r in runs["encoded"]),
        "typed_process_seconds": median(r["process_seconds"] for r in runs["typed"]),
        "encoded_process_seconds": median(r["process_seconds"] for r in runs["encoded"]),
        "typed_test": median(r["metrics"][metric] for r in runs["typed"]),
        "encoded_test": median(r["metrics"][metric] for r in runs["encoded"]),
    }
    result["typed_steady_seconds"] = median(r["steady_seconds"] for r in runs["typed"])
    result["encoded_steady_seconds"] = median(r["steady_seconds"] for r in runs["encoded"])
    result["time_ratio"] = result["typed_epoch_seconds"] / result["encoded_epoch_seconds"]
    result["steady_time_ratio"] = result["typed_steady_seconds"] / result["encoded_steady_seconds"]
    result["process_time_ratio"] = result["typed_process_seconds"] / result["encoded_process_seconds"]
    return result


def bench_typed_tables(rounds: int) -> dict:
    return {name: bench_table(name, rounds) for name in TABLES}


def rows(r: dict) -> list[tuple]:
    """(measure, mlcli, baseline, ratio, target) rows for bench/report.py's table."""
    out = []
    for name, e in r.items():
        if e["task"] == "classification":
            out.append((f"{name}: test accuracy, shipped config vs HistGradientBoosting",
                        f"{100 * e['mlcli']:.2f}%", f"{100 * e['boosting']:.2f}%",
                        f"{100 * (e['mlcli'] - e['boosting']):+.2f} pts", ""))
        else:
            out.append((f"{name}: test MAE (mpg), shipped config vs HistGradientBoosting",
                        f"{e['mlcli']:.3f}", f"{e['boosting']:.3f}", f"{e['mlcli'] / e['boosting']:.2f}x", ""))
        out.append((f"{name}: training epochs' seconds ({TIMING_EPOCHS} epochs), typed features vs pre-encoded "
                    "numeric CSV", f"{e['typed_epoch_seconds']:.2f} s", f"{e['encoded_epoch_seconds']:.2f} s",
                    f"{e['time_ratio']:.2f}x", "<= 1.3x"))
        out.append((f"{name}: the same, epochs 2-{TIMING_EPOCHS} (epoch 1 also traces the graph)",
                    f"{e['typed_steady_seconds']:.2f} s", f"{e['encoded_steady_seconds']:.2f} s",
                    f"{e['steady_time_ratio']:.2f}x", ""))
        out.append((f"{name}: the same, whole process", f"{e['typed_process_seconds']:.2f} s",
                    f"{e['encoded_process_seconds']:.2f} s", f"{e['process_time_ratio']:.2f}x", ""))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="seeds per table (medians)")
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("every figure is a median of at least three runs: --rounds must be >= 3")
    started = time.perf_counter()
    result = bench_typed_tables(args.rounds)
    (WORK / "typed_tables.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| measure | mlcli / typed | baseline / pre-encoded | ratio | target |")
    print("|---|---|---|---|---|")
    for measure, mine, theirs, ratio, target in rows(result):
        print(f"| {measure} | {mine} | {theirs} | {ratio} | {target} |")
    log(f"done in {(time.perf_counter() - started) / 60:.1f} min; raw runs in {WORK / 'typed_tables.json'}")


if __name__ == "__main__":
    main()
