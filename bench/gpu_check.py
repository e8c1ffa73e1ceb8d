"""A GPU check, for a machine with an NVIDIA GPU and a CUDA build of TensorFlow
(`pip install 'tensorflow[and-cuda]==2.21.*'`). It confirms, through the real CLI:

1. the GPU is detected (`mlcli doctor --json` lists it, with its compute capability);
2. `runtime.precision: auto` picks what the capability calls for (mixed_bfloat16 on 8.0 and later,
   mixed_float16 on 7.x, float32 before), and the run records it;
3. a training run completes on the GPU (`--device gpu`: run.json says gpu:…), and with two or more
   GPUs, a mirrored run over all of them reports one replica per GPU;
4. the training throughput (rows per second over the epochs after the first) on the GPU against the CPU.
5. images: the from-scratch CNN of configs/shapes_cnn.yaml on 3,000 generated 32x32 shapes trains on
   the GPU under the automatic (mixed) precision, reaching the accuracy the CPU's float32 run reaches
   (within 2 points), with its images/s against the CPU's.
6. issue 17's MobileNetV3Small runs (bench/backbone_bench.py: 96x96 images, backbone frozen and whole
   network trainable, mlcli against plain Keras) on the GPU with mixed precision (the capability's
   precision, set on both sides), images per second.
7. issue 21's model-scale rows (bench/scale_bench.py: the 1M- and 10M-parameter MLPs at batch 512,
   mlcli against the tuned plain Keras script) and the seed job (configs/digits.yaml, whole process),
   each with `training.jit_compile` true and false, in float32 and in the capability's mixed precision
   (mixed_float16 on GPUs before 8.0): samples/s, fraction of the GPU's measured matmul peak, and
   whether `jit_compile: auto` (Keras's choice on a GPU) picked XLA.

    python bench/gpu_check.py [--rows 500000] [--epochs 3] [--batch-size 1024] [--images 2000] [--no-backbone]
                              [--no-scale]

Prints what it found and writes bench/results/gpu_check.json. Exit 0 when every check passes, 1 when
one fails, 2 when there is no usable GPU (doctor's diagnosis is printed).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).absolute().parent.parent
RESULTS = REPO / "bench" / "results" / "gpu_check.json"
sys.path.insert(0, str(Path(__file__).absolute().parent))

import backbone_bench  # noqa: E402  (bench/ is a folder of scripts, not a package)
import scale_bench  # noqa: E402
from stream_memory import write_shards  # noqa: E402

CONFIG = """\
# written by bench/gpu_check.py
name: gpu-check
seed: 3
data: {{train: {train}, validation: 0.1}}
model:
  layers:
    - {{type: Dense, units: 256, activation: relu}}
    - {{type: Dense, units: 256, activation: relu}}
    - {{type: Dense, units: 10, activation: softmax}}
optimizer: {{type: adam, learning_rate: 0.001}}
training: {{epochs: {epochs}, batch_size: {batch_size}}}
"""


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def mlcli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlcli", *args], capture_output=True, text=True, env=_env(),
                          cwd=REPO)


def expected_precision(capabilities: list[tuple[int, int]]) -> str:
    lowest = min(capabilities)
    return "mixed_bfloat16" if lowest >= (8, 0) else "mixed_float16" if lowest >= (7, 0) else "float32"


def train(config: Path, out: Path, device: str, rows: int) -> dict:
    started = time.perf_counter()
    done = mlcli("train", str(config), "--output", str(out), "--force", "--device", device, "--json")
    if done.returncode != 0:
        return {"device": device, "exit_code": done.returncode, "error": done.stderr.strip()[-2000:]}
    document = json.loads(done.stdout)
    with open(out / "history.csv") as handle:
        history = list(csv.DictReader(handle))
    later = history[1:] or history  # the first epoch includes tracing and warm-up
    seconds = sum(float(row["seconds"]) for row in later)
    train_rows = json.loads((out / "run.json").read_text())["rows"]["train"]
    return {"device": device, "exit_code": 0, "reported_device": document["device"],
            "precision": document["precision"], "distribute": document.get("distribute"),
            "rows_per_second": round(train_rows * len(later) / seconds), "val_accuracy": document["metrics"].get(
                "val_accuracy"), "process_seconds": round(time.perf_counter() - started, 1)}


IMAGE_CONFIG = "configs/shapes_cnn.yaml"
IMAGE_EPOCHS = 5


def image_runs(work_dir: Path, devices: list[str]) -> dict[str, dict]:
    """configs/shapes_cnn.yaml on more generated shapes (mlcli/datasets/make_shapes.py), on each device,
    precision auto (mixed on a recent GPU, float32 on the CPU)."""
    sys.path.insert(0, str(REPO))
    from mlcli.datasets.make_shapes import write_set

    folders = work_dir / "shapes"
    write_set(folders, {"train": 1000, "test": 200})
    runs = {}
    for device in devices:
        out = work_dir / f"images-{device.replace(':', '')}"
        started = time.perf_counter()
        done = mlcli("train", IMAGE_CONFIG, "--output", str(out), "--force", "--device", device, "--json",
                     "--set", f"data.train={folders / 'train'}", "--set", f"data.test={folders / 'test'}",
                     "--set", f"training.epochs={IMAGE_EPOCHS}")
        if done.returncode != 0:
            runs[device] = {"device": device, "exit_code": done.returncode, "error": done.stderr.strip()[-2000:]}
            continue
        document = json.loads(done.stdout)
        with open(out / "history.csv") as handle:
            later = list(csv.DictReader(handle))[1:]
        images = json.loads((out / "run.json").read_text())["rows"]["train"]
        runs[device] = {"device": device, "exit_code": 0, "reported_device": document["device"],
                        "precision": document["precision"],
                        "images_per_second": round(images * len(later) / sum(float(r["seconds"]) for r in later)),
                        "test_accuracy": document["metrics"]["test_accuracy"],
                        "process_seconds": round(time.perf_counter() - started, 1)}
    return runs


def image_checks(runs: dict[str, dict], precision: str) -> dict[str, bool]:
    gpu, cpu = runs.get("gpu:0", {}), runs.get("cpu", {})
    both = gpu.get("exit_code") == 0 and cpu.get("exit_code") == 0
    return {
        f"image CNN trains on the GPU in {precision}": gpu.get("exit_code") == 0 and gpu.get("precision") == precision,
        "image CNN: GPU test accuracy within 2 points of the CPU's": both and abs(
            gpu["test_accuracy"] - cpu["test_accuracy"]) <= 0.02,
    }


def scale_rows(precision: str) -> dict:
    """Issue 21's rows on the GPU: the MLPs (mlcli and plain Keras, jit_compile true and false) and the
    seed job, in float32 and in `precision`. One run each: a GPU machine is usually not shared."""
    import common

    peak = common.last_json(common.run([sys.executable, str(REPO / "bench" / "matmul_peak.py")])["stdout"])
    rows: dict = {}
    for policy in dict.fromkeys(["float32", precision]):
        rows[policy] = scale_bench.measure(rounds=1, peak=peak, precision=policy, jits=("true", "false"))
        seed = {}
        for jit in ("true", "false", "auto"):
            started = time.perf_counter()
            done = mlcli("train", "configs/digits.yaml", "--output", str(common.WORK / "runs" / f"gpu-seed-{jit}"),
                         "--force", "--json", "--quiet", "--set", f"training.jit_compile={jit}",
                         "--set", f"runtime.precision={policy}")
            seed[jit] = ({"seconds": round(time.perf_counter() - started, 2),
                          "jit_compile": json.loads(done.stdout)["distribute"]["jit_compile"],
                          "test_accuracy": json.loads(done.stdout)["metrics"]["test_accuracy"]}
                         if done.returncode == 0 else {"exit_code": done.returncode, "error": done.stderr[-2000:]})
        rows[policy]["seed_job"] = seed
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--images", type=int, default=2000, help="images for the MobileNetV3Small runs")
    parser.add_argument("--no-backbone", action="store_true", help="skip the MobileNetV3Small runs")
    parser.add_argument("--no-scale", action="store_true", help="skip the model-scale MLP rows and the seed job")
    args = parser.parse_args()

    doctor = mlcli("doctor", "--json")
    report = json.loads(doctor.stdout) if doctor.returncode == 0 else {}
    gpus = report.get("gpus") or []
    print(f"doctor: {report.get('diagnosis', doctor.stderr.strip())}")
    if not gpus:
        print("this check needs a GPU (an NVIDIA GPU and a CUDA build of TensorFlow), and this machine has no "
              "usable one: nothing to check here")
        sys.exit(2)
    capabilities = [tuple(int(p) for p in (g["compute_capability"] or "0.0").split(".")) for g in gpus]
    for gpu in gpus:
        print(f"  {gpu['name']}: {gpu['model']}, compute capability {gpu['compute_capability']}")

    checks: dict[str, bool] = {"gpu detected": True}
    with tempfile.TemporaryDirectory(prefix="mlcli-gpu-check-") as work:
        work_dir = Path(work)
        write_shards(work_dir / "data", args.rows)
        config = work_dir / "gpu.yaml"
        config.write_text(CONFIG.format(train=work_dir / "data" / "part-*.parquet", epochs=args.epochs,
                                        batch_size=args.batch_size))
        runs = {device: train(config, work_dir / device.replace(":", ""), device, args.rows)
                for device in ["gpu:0", "cpu"] + (["gpu"] if len(gpus) > 1 else [])}
        images = image_runs(work_dir, ["gpu:0", "cpu"])
    gpu_run, cpu_run = runs["gpu:0"], runs["cpu"]
    checks["training completes on the GPU"] = gpu_run["exit_code"] == 0 and gpu_run["reported_device"] == "gpu:0"
    checks[f"auto precision is {expected_precision(capabilities[:1])}"] = \
        gpu_run.get("precision") == expected_precision(capabilities[:1])
    checks["training completes on the CPU"] = cpu_run["exit_code"] == 0 and cpu_run.get("precision") == "float32"
    if len(gpus) > 1:
        mirrored = runs["gpu"]
        checks[f"mirrored over {len(gpus)} GPUs"] = mirrored["exit_code"] == 0 and \
            (mirrored.get("distribute") or {}).get("replicas") == len(gpus)
    checks.update(image_checks(images, expected_precision(capabilities[:1])))
    backbone = None
    if not args.no_backbone:
        precision = expected_precision(capabilities[:1])
        precision = precision if precision != "float32" else "mixed_float16"
        try:
            backbone = backbone_bench.measure(images=args.images, epochs=3, batch_size=64, precision=precision)
            checks[f"MobileNetV3Small runs complete on the GPU with {precision}"] = True
        except SystemExit as exc:
            checks[f"MobileNetV3Small runs complete on the GPU with {precision}"] = False
            print(f"  MobileNetV3Small runs failed: {exc}")
    scale = None
    if not args.no_scale:
        precision = expected_precision(capabilities[:1])
        precision = precision if precision != "float32" else "mixed_float16"
        try:
            scale = scale_rows(precision)
            checks[f"model-scale MLPs and the seed job complete on the GPU in float32 and {precision}"] = all(
                "error" not in run for policy in scale.values() for run in policy["seed_job"].values())
        except RuntimeError as exc:  # common.run: a run that exited non-zero
            checks[f"model-scale MLPs and the seed job complete on the GPU in float32 and {precision}"] = False
            print(f"  model-scale runs failed: {exc}")
    speedup = gpu_run.get("rows_per_second", 0) / max(cpu_run.get("rows_per_second", 1), 1)
    image_speedup = images["gpu:0"].get("images_per_second", 0) / max(images["cpu"].get("images_per_second", 1), 1)
    for name, ok in checks.items():
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    for device, run in runs.items():
        print(f"  {device}: " + (f"{run['rows_per_second']:,} rows/s, precision {run['precision']}"
                                 if run["exit_code"] == 0 else f"exit {run['exit_code']}: {run['error']}"))
    print(f"  GPU / CPU training throughput: {speedup:.1f}x")
    for device, run in images.items():
        print(f"  images, {device}: " + (f"{run['images_per_second']:,} images/s, precision {run['precision']}, "
                                         f"test accuracy {run['test_accuracy']:.4f}"
                                         if run["exit_code"] == 0 else f"exit {run['exit_code']}: {run['error']}"))
    print(f"  GPU / CPU image CNN throughput: {image_speedup:.1f}x")
    for trainable, entry in ((backbone or {}).get("runs") or {}).items():
        rates = entry["images_per_second"]
        print(f"  MobileNetV3Small 96x96, backbone {trainable}: mlcli {rates['mlcli']:.0f} images/s, plain Keras "
              f"{rates['keras']:.0f} images/s ({entry['mlcli_over_keras']:.2f}x)")
    for policy, result in (scale or {}).items():
        for name, entry in result["rows"].items():
            for jit in ("true", "false"):
                m, k = entry[f"mlcli_jit_{jit}"], entry[f"keras_jit_{jit}"]
                print(f"  {name} MLP, {policy}, jit_compile {jit}: mlcli {m['samples_per_second']:,.0f} samples/s "
                      f"({100 * m['fraction_of_peak']:.0f}% of the float32 matmul peak), plain Keras "
                      f"{k['samples_per_second']:,.0f} samples/s ({entry[f'speedup_jit_{jit}']:.2f}x)")
        for jit, run in result["seed_job"].items():
            print(f"  seed job, {policy}, jit_compile {jit}: " + (
                f"{run['seconds']:.1f} s, XLA {'on' if run['jit_compile'] else 'off'}" if "seconds" in run
                else f"exit {run['exit_code']}"))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "gpus": gpus, "checks": checks, "runs": runs, "gpu_over_cpu": round(speedup, 2),
        "image_runs": images, "image_gpu_over_cpu": round(image_speedup, 2), "backbone": backbone, "scale": scale,
        "settings": {"rows": args.rows, "epochs": args.epochs, "batch_size": args.batch_size},
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "tensorflow": report.get("tensorflow"), "cpus": os.cpu_count()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2) + "\n")
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
