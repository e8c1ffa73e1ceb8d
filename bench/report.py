"""The targets of the benchmark issue, checked against one run's results, and the Markdown table.

Plain Keras runs twice (bench/run.py): with its defaults and tuned. The table shows both; a target that
compares with plain Keras is judged against the tuned one, the stronger baseline."""

from __future__ import annotations

from pathlib import Path

from typed_tables import rows as typed_rows

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def targets(r: dict) -> dict[str, dict]:
    """name -> {"met": bool, "value", "target"} for every target whose benchmark ran."""
    out: dict[str, dict] = {}

    def check(name: str, met: bool, value, target: str) -> None:
        out[name] = {"met": bool(met), "value": value, "target": target}

    if "startup" in r:
        s = r["startup"]
        help_s, validate_s = s["median_seconds"]["help"], s["median_seconds"]["validate"]
        check("help", help_s <= 0.5 and s["speedup_help"] >= 5, help_s, "<= 0.5 s and >= 5x import tensorflow")
        check("validate", validate_s <= 0.8 and s["speedup_validate"] >= 5, validate_s,
              "<= 0.8 s and >= 5x import tensorflow")
    if "seed" in r:
        s = r["seed"]
        check("seed_time", s["time_ratio_tuned"] <= 1.0, s["time_ratio_tuned"],
              "<= 1.0x the tuned baseline's whole-process time")
        check("seed_accuracy", abs(s["accuracy_points_tuned"]) <= 1.5, s["accuracy_points_tuned"],
              "within 1.5 points of the tuned baseline")
    if "throughput" in r:
        for batch, wanted in ((32, 2.0), (256, 1.3)):
            e = r["throughput"][f"batch_{batch}"]
            check(f"throughput_{batch}", e["speedup_tuned"] >= wanted, e["speedup_tuned"],
                  f">= {wanted}x the tuned baseline")
            check(f"accuracy_{batch}", abs(e["accuracy_points_tuned"]) <= 1.0, e["accuracy_points_tuned"],
                  "within 1 point of the tuned baseline")
    if "loading" in r:
        check("loading", r["loading"]["speedup"] >= 2.0, r["loading"]["speedup"], ">= 2x pandas")
    if "memory" in r:
        for name in ("seed", "rows_160k"):
            check(f"memory_{name}", r["memory"][name]["ratio"] <= 1.0, r["memory"][name]["ratio"],
                  "<= 1.00x the tuned baseline's peak RSS")
    if "images" in r:
        check("images_cnn", r["images"]["speedup"] >= 1.0, r["images"]["speedup"],
              ">= 1.0x image_dataset_from_directory")
    if "predict" in r:
        p = r["predict"]
        check("predict_rate", p["rows_per_second_streaming"] >= 200_000, p["rows_per_second_streaming"],
              ">= 200,000 rows/s")
        check("predict_memory", p["memory_growth"] <= 0.15, p["memory_growth"], "1M-row peak within 15% of 100k-row")
    if "typed_tables" in r:
        for name, e in r["typed_tables"].items():
            check(f"typed_time_{name}", e["time_ratio"] <= 1.3, e["time_ratio"],
                  "<= 1.3x the epochs' time on pre-encoded numeric columns")
    if "stream_typed" in r:
        g = r["stream_typed"]
        check("stream_typed_memory", g["growth"] <= g["tolerance"], g["growth"],
              f"{g['rows'][1]:,}-row peak within {g['tolerance']:.0%} of {g['rows'][0]:,}-row")
    if "backbone" in r:
        for trainable, entry in r["backbone"]["runs"].items():
            check(f"backbone_{trainable}", entry["mlcli_over_keras"] >= 1.0, entry["mlcli_over_keras"],
                  ">= 1.0x plain Keras (image_dataset_from_directory)")
    if "serve" in r:
        for name, entry in r["serve"]["targets"].items():
            check(f"serve_{name}", entry["met"], entry["value"], str(entry.get("target", "0 errors")))
    if "scale" in r:
        noise = r["scale"]["settings"]["noise"]
        for name, e in r["scale"]["rows"].items():
            for jit in ("true", "false"):
                if f"speedup_jit_{jit}" in e:
                    check(f"scale_{name}_jit_{jit}", e[f"speedup_jit_{jit}"] >= 1.0, e[f"speedup_jit_{jit}"],
                          ">= 1.0x the tuned baseline with the same jit_compile")
                if f"mlcli_jit_{jit}" in e:
                    m = e[f"mlcli_jit_{jit}"]
                    check(f"scale_{name}_jit_{jit}_peak", m["fraction_of_peak"] >= 0.70, m["fraction_of_peak"],
                          ">= 70% of the matmul peak")
                    check(f"scale_{name}_jit_{jit}_epochs", m["slowest_later_over_first"] <= 1 + noise,
                          m["slowest_later_over_first"], f"no later epoch more than {noise:.0%} slower than the first")
    return out


def _yes(name: str, t: dict) -> str:
    if name not in t:
        return ""
    return "yes" if t[name]["met"] else "**no**"


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _mb(value: float) -> str:
    return f"{value:,.0f} MB"


def _epochs(seconds: list[float], process: float) -> str:
    return " / ".join(f"{value:.2f}" for value in seconds) + f" s; process {process:.1f} s"


def _points(value: float) -> str:
    return f"{value:+.2f} pts"


def markdown(r: dict) -> str:
    t = r.get("targets", {})
    rows: list[tuple] = []

    def row(number: str, measure: str, mlcli: str, baseline: str = "", tuned: str = "", ratio: str = "",
            ratio_tuned: str = "", target: str = "", met: str = "") -> None:
        rows.append((number, measure, mlcli, baseline, tuned, ratio, ratio_tuned, target, met))

    if "startup" in r:
        s = r["startup"]
        tf = s["median_seconds"]["import_tensorflow"]
        row("1", "`mlcli --help` (whole process)", _s(s["median_seconds"]["help"]), f"`import tensorflow` {_s(tf)}",
            ratio=f"{s['speedup_help']:.1f}x faster", target="<= 0.5 s, >= 5x", met=_yes("help", t))
        row("1", "`mlcli validate configs/digits.yaml`", _s(s["median_seconds"]["validate"]),
            f"`import tensorflow` {_s(tf)}", ratio=f"{s['speedup_validate']:.1f}x faster", target="<= 0.8 s, >= 5x",
            met=_yes("validate", t))
    if "seed" in r:
        s = r["seed"]
        row("2", "seed job, whole process: `mlcli train configs/digits.yaml`", _s(s["mlcli"]["seconds"]),
            _s(s["baseline"]["seconds"]), _s(s["tuned"]["seconds"]), f"{s['time_ratio']:.2f}x the time",
            f"{s['time_ratio_tuned']:.2f}x the time", "<= 1.00x", _yes("seed_time", t))
        row("2", "seed job, test accuracy", _pct(s["mlcli"]["test_accuracy"]), _pct(s["baseline"]["test_accuracy"]),
            _pct(s["tuned"]["test_accuracy"]), _points(s["accuracy_points"]), _points(s["accuracy_points_tuned"]),
            "within 1.5 pts", _yes("seed_accuracy", t))
    if "throughput" in r:
        for batch, wanted in ((32, "2.0"), (256, "1.3")):
            e = r["throughput"][f"batch_{batch}"]
            row("3", f"training samples/s, batch {batch} (200k x 64, epochs 2-3)",
                _rate(e["mlcli"]["samples_per_second"]), _rate(e["baseline"]["samples_per_second"]),
                _rate(e["tuned"]["samples_per_second"]), f"{e['speedup']:.2f}x", f"{e['speedup_tuned']:.2f}x",
                f">= {wanted}x", _yes(f"throughput_{batch}", t))
            row("3", f"test accuracy after 3 epochs, batch {batch}", _pct(e["mlcli"]["test_accuracy"]),
                _pct(e["baseline"]["test_accuracy"]), _pct(e["tuned"]["test_accuracy"]),
                _points(e["accuracy_points"]), _points(e["accuracy_points_tuned"]), "within 1 pt",
                _yes(f"accuracy_{batch}", t))
    if "loading" in r:
        lo = r["loading"]
        pandas = f"pandas {_s(lo['median_seconds']['pandas'])}"
        row("4", f"200,000-row CSV ({lo['file_mb']} MB) to training-ready arrays", _s(lo["median_seconds"]["mlcli"]),
            pandas, ratio=f"{lo['speedup']:.2f}x faster", target=">= 2x", met=_yes("loading", t))
        row("4", "the same CSV, `pyarrow.csv.read_csv` alone (parse only: the floor of any pyarrow reader)",
            _s(lo["median_seconds"]["pyarrow_parse_only"]), pandas, ratio=f"{lo['pyarrow_parse_speedup']:.2f}x faster")
        if "pyarrow_one_thread" in lo["median_seconds"]:
            row("4", "the same parse on one core (`use_threads=False`): with 2 cores, 2x pandas needs at least 1.0x "
                     "here", _s(lo["median_seconds"]["pyarrow_one_thread"]), pandas,
                ratio=f"{lo['pyarrow_one_thread_speedup']:.2f}x")
    if "memory" in r:
        me = r["memory"]
        for name, what in (("seed", "seed job (`mlcli train configs/digits.yaml`)"),
                           ("rows_160k", "160,000 x 64 rows, 64-64-10, batch 256, 3 epochs")):
            entry = me[name]
            row("11", f"peak RSS, whole process: {what}", f"{entry['median_mb']['mlcli']:.0f} MB",
                tuned=f"{entry['median_mb']['tuned']:.0f} MB", ratio_tuned=f"{entry['ratio']:.2f}x",
                target="<= 1.00x", met=_yes(f"memory_{name}", t))
    if "images" in r:
        im = r["images"]
        row("6", f"training images/s, from-scratch CNN (configs/shapes_cnn.yaml, {im['data']['train_images']:,} "
                 "32x32 shapes, epochs 2-3)", _rate(im["mlcli"]["samples_per_second"]),
            f"`image_dataset_from_directory` {_rate(im['keras']['samples_per_second'])}",
            ratio=f"{im['speedup']:.2f}x", target=">= 1.0x", met=_yes("images_cnn", t))
        row("6", "test accuracy after 3 epochs, the same CNN", _pct(im["mlcli"]["test_accuracy"]),
            _pct(im["keras"]["test_accuracy"]),
            ratio=_points(100 * (im["mlcli"]["test_accuracy"] - im["keras"]["test_accuracy"])))
        if "peak_rss_mb" in im["mlcli"]:
            row("6", "the same CNN: seconds of each epoch (epoch 1 traces the step; Keras's also decodes the "
                     "images, mlcli's were decoded before it), and the whole process",
                _epochs(im["mlcli"]["epoch_seconds"], im["mlcli"]["process_seconds"]),
                _epochs(im["keras"]["epoch_seconds"], im["keras"]["process_seconds"]),
                ratio=f"{im['mlcli']['process_seconds'] / im['keras']['process_seconds']:.2f}x the time")
            row("6", "the same CNN: peak RSS of the process", _mb(im["mlcli"]["peak_rss_mb"]),
                _mb(im["keras"]["peak_rss_mb"]), ratio=f"{im['mlcli']['peak_rss_mb'] / im['keras']['peak_rss_mb']:.2f}x")
    if "predict" in r:
        p = r["predict"]
        small, large = p["100000"], p["1000000"]
        row("5", "`mlcli predict` CSV to CSV with probabilities, rows/s streaming (1M minus 100k rows)",
            _rate(p["rows_per_second_streaming"]), target=">= 200,000/s", met=_yes("predict_rate", t))
        row("5", "`mlcli predict` 1,000,000 rows, whole process (with start-up)",
            f"{_s(large['seconds'])} = {_rate(large['rows_per_second'])}")
        row("5", "`mlcli predict` peak RSS, 1,000,000 vs 100,000 rows",
            f"{large['peak_rss_mb']:.0f} MB vs {small['peak_rss_mb']:.0f} MB",
            ratio=f"{100 * p['memory_growth']:+.1f}%", target="<= +15%", met=_yes("predict_memory", t))
    if "serve" in r:
        v = r["serve"]
        for c in ("1", "16", "64"):
            m, n = v["levels"]["mlcli"][c], v["levels"]["naive"][c]
            row("10", f"`mlcli serve` requests/s at concurrency {c} (p50 / p99 ms)",
                f"{m['requests_per_second']:,.0f}/s ({m['p50_ms']:.1f} / {m['p99_ms']:.1f})",
                f"{n['requests_per_second']:,.0f}/s ({n['p50_ms']:.1f} / {n['p99_ms']:.1f})",
                ratio=f"{v['speedup'][c]:.1f}x", target=">= 3x naive" if c == "64" else "",
                met=_yes("serve_speedup_at_64", t) if c == "64" else "")
        soak = v["soak"]
        row("10", f"`mlcli serve` {soak['requests']:,} requests at concurrency 64: errors, RSS growth",
            f"{soak['errors']} errors, {100 * soak['rss_growth']:+.1f}%", target="0 errors, <= +10%",
            met="yes" if t.get("serve_soak_no_errors", {}).get("met") and t.get("serve_memory_flat", {}).get("met")
            else "**no**")
    if "utilisation" in r:
        u = r["utilisation"]
        peak = u["matmul_peak"]["peak_flops"]

        def share(entry: dict) -> str:
            return f"{entry['flops'] / 1e9:.1f} GFLOP/s = {_pct(entry['fraction'])}"

        for batch in (32, 256):
            m, b, tuned = (u[f"batch_{batch}_{side}"] for side in ("mlcli", "baseline", "tuned"))
            row("6", (f"training FLOP/s (6 x {u['trainable_parameters']:,} params x samples/s), "
                      f"batch {batch}, of the {peak / 1e9:.0f} GFLOP/s matmul peak"), share(m), share(b), share(tuned),
                f"{m['fraction'] / b['fraction']:.2f}x", f"{m['fraction'] / tuned['fraction']:.2f}x")
    if "typed_tables" in r:
        for (measure, mine, theirs, ratio, target), name in zip(typed_rows(r["typed_tables"]),
                                                                 [n for n in r["typed_tables"] for _ in range(4)]):
            row("7", measure, mine, theirs, ratio=ratio, target=target,
                met=_yes(f"typed_time_{name}", t) if target else "")
    if "stream_typed" in r:
        g = r["stream_typed"]
        small, large = g["rows"]
        row("7", f"typed streaming: peak RSS, small vs {large // small}x file (one streamed epoch, {small:,} vs "
                 f"{large:,} rows: categories, gaps, a date)",
            f"{g['large_peak_rss_mb']:.0f} MB vs {g['small_peak_rss_mb']:.0f} MB", ratio=f"{100 * g['growth']:+.1f}%",
            target=f"<= +{100 * g['tolerance']:.0f}%", met=_yes("stream_typed_memory", t))
    if "tune" in r:
        tu = r["tune"]
        m, k = tu["median"]["mlcli"], tu["median"]["keras_tuner"]
        row("8", f"sweep overhead per trial beyond its training time (digits, {tu['trials']} trials x {tu['epochs']} "
                 "epochs, medians over trials of 3 seeds)", _s(tu["median_overhead_seconds_per_trial"]),
            ratio=f"training {_s(tu['median_train_seconds_per_trial'])} a trial")
        row("8", f"sweep wall time, whole process: `mlcli tune` vs KerasTuner RandomSearch, same space, "
                 f"{tu['trials']} trials x {tu['epochs']} epochs (median of {tu['seeds']} seeds)", _s(m["seconds"]),
            f"KerasTuner {_s(k['seconds'])}", ratio=f"{tu['wall_ratio_mlcli_to_keras_tuner']:.2f}x the time")
        row("8", "sweep best val_accuracy (best epoch), median of seeds", _pct(m["best_value"]),
            f"KerasTuner {_pct(k['best_value'])}", ratio=_points(m["best_value"] - k["best_value"]))
    if "backbone" in r:
        b = r["backbone"]
        settings = b["settings"]
        for trainable, entry in b["runs"].items():
            what = "backbone frozen" if trainable == "frozen" else "whole network trainable"
            rates = entry["images_per_second"]
            row("9", f"images/s training MobileNetV3Small {settings['size']}x{settings['size']}, {what} "
                     f"({settings['images']} images, batch {settings['batch_size']}, epochs 2-{settings['epochs']})",
                f"{rates['mlcli']:.1f}", f"{rates['keras']:.1f} (image_dataset_from_directory)",
                ratio=f"{entry['mlcli_over_keras']:.2f}x", target=">= 1.0x", met=_yes(f"backbone_{trainable}", t))
            if "peak_rss_mb" in entry:
                seconds, rss, process = entry["epoch_seconds"], entry["peak_rss_mb"], entry["process_seconds"]
                row("9", f"the same, {what}: seconds of each epoch (history.csv / the Keras callback; epoch 1 "
                         "traces the step), and the whole process", _epochs(seconds["mlcli"], process["mlcli"]),
                    _epochs(seconds["keras"], process["keras"]),
                    ratio=f"{process['mlcli'] / process['keras']:.2f}x the time")
                row("9", f"the same, {what}: peak RSS of the process", _mb(rss["mlcli"]), _mb(rss["keras"]),
                    ratio=f"{rss['mlcli'] / rss['keras']:.2f}x")
    if "scale" in r:
        sc = r["scale"]
        peak = sc["matmul_peak"]["peak_flops"]
        for name, e in sc["rows"].items():
            what = (f"64-{'-'.join(map(str, e['hidden']))}-10 MLP ({e['parameters']:,} params), {e['train_rows']:,} rows, "
                    f"batch {sc['settings']['batch_size']}")
            for jit in ("false", "true"):
                m, k = e.get(f"mlcli_jit_{jit}"), e.get(f"keras_jit_{jit}")
                if m is None or k is None:
                    continue
                row("11", f"{what}, jit_compile {jit}: training samples/s (epoch periods after the first), "
                          f"fraction of the {peak / 1e9:.0f} GFLOP/s matmul peak",
                    f"{_rate(m['samples_per_second'])} = {_pct(m['fraction_of_peak'])}", "",
                    f"{_rate(k['samples_per_second'])} = {_pct(k['fraction_of_peak'])}", "",
                    f"{e[f'speedup_jit_{jit}']:.2f}x", ">= 1.0x, >= 70% of peak",
                    "yes" if t.get(f"scale_{name}_jit_{jit}", {}).get("met")
                    and t.get(f"scale_{name}_jit_{jit}_peak", {}).get("met") else "**no**")
                row("11", f"{what}, jit_compile {jit}: peak RSS; epoch seconds (first, then periods)",
                    f"{m['peak_rss_mb']:.0f} MB; {_scale_epochs(m)}", "", f"{k['peak_rss_mb']:.0f} MB; {_scale_epochs(k)}",
                    "", f"{m['peak_rss_mb'] / k['peak_rss_mb']:.2f}x RSS",
                    f"later epochs <= first +{100 * sc['settings']['noise']:.0f}%",
                    _yes(f"scale_{name}_jit_{jit}_epochs", t))
    lines = ["| # | measure | mlcli | baseline | tuned baseline | ratio | ratio to tuned | target | met |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    m = r["machine"]
    v = m["versions"]
    rounds = r["rounds"]
    lines += ["", _tuned_note(r), "",
              (f"Medians of {rounds['startup']} (start-up), {rounds['seed']} (seed job), "
               f"{rounds['loading']} (loading), {rounds['default']} (batch-32 throughput, predict) and "
               f"{rounds['batch_256']} (batch-256 throughput)"
               + (f", {rounds['memory']} (peak RSS)" if "memory" in r else "") + " runs; seeds 42, 43, … for the training runs, "
               "the sides interleaved in one `make bench` invocation; "
               f"{m['cpu']}, {m['cores']} cores, load average {m['load_average_at_start'][0]:.1f} at the start; "
               f"TensorFlow {v.get('tensorflow')}, Keras {v.get('keras')}, pandas {v.get('pandas')}, "
               f"pyarrow {v.get('pyarrow')}, Python {v.get('python')}; commit {m['commit']}, "
               f"{r['started_at']}, {r['seconds'] / 60:.1f} min.")]
    return "\n".join(lines) + "\n"


def _tuned_note(r: dict) -> str:
    """What the two plain Keras columns ran, and which one the targets use."""
    settings = []
    for batch in (32, 256):
        entry = r.get("throughput", {}).get(f"batch_{batch}", {}).get("tuned_settings")
        if entry:
            settings.append(f"batch {batch}: steps_per_execution {entry['steps_per_execution']}, "
                            f"jit_compile {entry['jit_compile']}")
    return ("Baseline: bench/baseline_keras.py with Keras's defaults (one step per call, normal interpreter exit). "
            "Tuned baseline: the same script with `--tuned` — steps_per_execution and jit_compile as measured best"
            + (f" ({'; '.join(settings)})" if settings else "")
            + ", ending with os._exit as mlcli does. Targets against plain Keras are judged against the tuned one.")


def _scale_epochs(entry: dict) -> str:
    """The first epoch's seconds, then the periods between later epoch ends (medians over runs)."""
    return " / ".join(f"{s:.1f}" for s in [entry["epoch_seconds"][0], *entry["epoch_periods"]]) + " s"


def update_readme(readme: Path, table: str) -> bool:
    """Replace the text between the bench markers; README without them is left alone."""
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        return False
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{table}{END}{tail}", encoding="utf-8")
    return True
