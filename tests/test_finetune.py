"""mlcli finetune through the real CLI: weights kept bit for bit where frozen, selectors, the head,
the shipped 0-4 -> 5-9 example, the parent's config as the base, and every error path."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CONFIGS, REPO, assert_resumed, kept_history, run_cli, saved_point

pytestmark = pytest.mark.slow

DIGITS_TEST = REPO / "mlcli" / "datasets" / "digits_test.csv.gz"


# ---- helpers --------------------------------------------------------------------------------------

def ok(ran) -> None:
    assert ran.exit_code == 0, ran
    assert ran.exception is None, ran


def refused(ran, code: int, *texts: str) -> None:
    """A user error: the exit code, the message, and no traceback."""
    assert ran.exit_code == code, ran
    assert ran.exception is None, ran
    assert "Traceback" not in ran.stderr, ran
    for text in texts:
        assert text in ran.stderr, (text, str(ran))


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def config_of(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def layer_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """Declared layers (mlcli's normalization excluded) -> their weights, loaded by plain Keras."""
    import keras

    model = keras.saving.load_model(path, compile=False)
    return {layer.name: [np.array(w) for w in layer.get_weights()]
            for layer in model.layers if layer.name != "mlcli_normalize"}


def assert_frozen_kept_and_trained_changed(parent_model: Path, child_dir: Path) -> dict:
    facts = manifest(child_dir)["finetune"]
    parent, child = layer_weights(parent_model), layer_weights(child_dir / "model.keras")
    assert set(child) == set(facts["frozen"]) | set(facts["trainable"])
    for name in facts["frozen"]:
        assert len(child[name]) == len(parent[name])
        for before, after in zip(parent[name], child[name]):
            assert np.array_equal(before, after), f"frozen layer {name} changed"
    for name in facts["trainable"]:
        if name in parent:  # a new head layer has no parent to compare with
            for before, after in zip(parent[name], child[name]):
                assert not np.array_equal(before, after), f"trainable layer {name} did not change"
    return facts


def parent_names(run_dir: Path) -> list[str]:
    return [row["name"] for row in manifest(run_dir)["layers"]]


def digits_rows(classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(DIGITS_TEST, "rt") as handle:
        header = handle.readline().strip().split(",")
        table = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    label = header.index("label")
    y = table[:, label].astype(int)
    x = np.delete(table, label, axis=1)
    keep = np.isin(y, classes)
    return x[keep], y[keep]


# ---- the parent and the shipped example ------------------------------------------------------------

@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """configs/digits_base.yaml as shipped: 64-64-5 on the digits 0-4."""
    out = tmp_path_factory.mktemp("base") / "digits_base"
    ok(run_cli("train", CONFIGS / "digits_base.yaml", "--output", out, "--quiet"))
    return out


@pytest.fixture(scope="module")
def example(base, tmp_path_factory):
    """configs/digits_finetune.yaml as shipped, from the base run: (run dir, --json document, Ran)."""
    out = tmp_path_factory.mktemp("example") / "digits_finetune"
    ran = run_cli("finetune", CONFIGS / "digits_finetune.yaml", "--from", base, "--output", out, "--json")
    ok(ran)
    return out, json.loads(ran.stdout), ran


def test_base_is_digits_0_to_4(base):
    assert json.loads((base / "labels.json").read_text()) == [0, 1, 2, 3, 4]
    assert manifest(base)["parameters"]["trainable"] == 64 * 64 + 64 + 64 * 64 + 64 + 64 * 5 + 5


def test_example_reaches_085_on_digits_5_to_9_with_only_the_head_trainable(example):
    out, doc, ran = example
    assert doc["status"] == "completed"
    accuracy = doc["metrics"]["test_accuracy"]
    assert accuracy >= 0.85, accuracy
    # The same number, recomputed without mlcli from the saved model and the raw test rows 5-9.
    import keras

    x, y = digits_rows([5, 6, 7, 8, 9])
    labels = json.loads((out / "labels.json").read_text())
    assert labels == [5, 6, 7, 8, 9]
    predicted = np.asarray(labels)[keras.saving.load_model(out / "model.keras").predict(x, verbose=0).argmax(axis=1)]
    assert len(y) == manifest(out)["rows"]["test"]
    assert float((predicted == y).mean()) == pytest.approx(accuracy, abs=1e-6)


def test_example_table_has_the_exact_parameter_counts_before_training(example):
    out, doc, ran = example
    # A new 64->5 softmax head is trainable (64*5+5); both 64-unit hidden layers are frozen.
    assert doc["parameters"]["trainable"] == 325
    assert doc["finetune"]["parameters"]["trainable"] == 325
    assert doc["finetune"]["parameters"]["frozen"] == 2 * (64 * 64 + 64) == 8320
    assert "parameters: 325 trainable, 8,320 frozen" in ran.stderr
    table = ran.stderr.index("fine-tuning ")
    assert table < ran.stderr.index("epoch 1/")  # shown before training starts
    shown = ran.stderr[table:ran.stderr.index("epoch 1/")]
    for column in ("index", "name", "type", "params", "state", "mlcli_normalize", "head_dense", "4,160", "325"):
        assert column in shown, column
    assert shown.count("frozen") >= 2 and "trainable (new)" in shown
    rows = doc["finetune"]["table"]
    assert [(r["index"], r["type"], r["params"], r["trainable"]) for r in rows] == [
        (0, "Dense", 4160, False), (1, "Dense", 4160, False), (2, "Dense", 325, True)]
    assert doc["layers"] == [{k: v for k, v in r.items() if k != "origin"} for r in rows]


def test_example_frozen_layers_are_bit_identical_to_the_parent(base, example):
    out, doc, _ = example
    facts = assert_frozen_kept_and_trained_changed(base / "model.keras", out)
    assert facts["frozen"] == parent_names(base)[:2]
    assert facts["trainable"] == ["head_dense"]
    assert facts["head"] == {"replaced": parent_names(base)[2:], "added": ["head_dense"]}


def test_example_run_json_records_the_parent_and_the_freeze(base, example):
    out, doc, _ = example
    record = manifest(out)
    parent = record["parent"]
    assert parent["path"] == str((base / "model.keras").resolve())
    assert parent["sha256"] == hashlib.sha256((base / "model.keras").read_bytes()).hexdigest()
    assert parent["run_dir"] == str(base.resolve())
    assert record["finetune"]["frozen"] == doc["finetune"]["frozen"]
    assert record["finetune"]["parameters"]["trainable"] == 325
    assert "notes" not in record["finetune"]
    for name in ("config.yaml", "model.keras", "best.keras", "labels.json", "history.csv", "metrics.json"):
        assert (out / name).is_file(), name


def test_example_summary_says_normalization_is_kept(example):
    _, _, ran = example
    assert "normalization kept from the parent" in ran.stderr
    assert "not refitted" in ran.stderr


def test_example_config_takes_what_it_does_not_give_from_the_parent(base, example):
    out, _, _ = example
    child, parent = config_of(out), config_of(base)
    assert child["model"] == parent["model"]  # the parent's architecture, as declared
    assert child["optimizer"] == parent["optimizer"] and child["loss"] == parent["loss"]
    assert child["runtime"] == parent["runtime"] and child["seed"] == parent["seed"]
    assert child["data"]["classes"] == [5, 6, 7, 8, 9]
    assert child["finetune"]["freeze"] == [0, 1]
    assert child["finetune"]["head"]["replace"] == 1
    assert child["name"] == "digits_finetune"


def test_resume_of_a_finished_finetune_does_nothing(base, example):
    out, doc, _ = example
    before = (out / "model.keras").read_bytes()
    ran = run_cli("finetune", "--resume", out, "--json")
    ok(ran)
    assert "nothing to do" in ran.stderr
    assert json.loads(ran.stdout)["metrics"] == pytest.approx(doc["metrics"])
    # The idempotent CI form: same CONFIG, same --from, --resume --output.
    ran = run_cli("finetune", CONFIGS / "digits_finetune.yaml", "--from", base, "--resume", "--output", out)
    ok(ran)
    assert "nothing to do" in ran.stderr
    assert (out / "model.keras").read_bytes() == before


def test_finetune_of_a_finetune_keeps_the_trained_head(example, tmp_path):
    """The parent's head is already in its checkpoint: taking the parent's config must not replace it
    again; freeze [0, 1] is inherited like every other setting."""
    parent, _, _ = example
    out = tmp_path / "again"
    ran = run_cli("finetune", "--from", parent, "--output", out, "--set", "training.epochs=1")
    ok(ran)
    config = config_of(out)
    assert config["finetune"]["head"] is None and config["finetune"]["freeze"] == [0, 1]
    assert config["model"]["layers"][-1] == {"type": "Dense", "units": 5, "activation": "softmax"}
    assert config["data"]["classes"] == [5, 6, 7, 8, 9]
    facts = assert_frozen_kept_and_trained_changed(parent / "model.keras", out)
    assert facts["trainable"] == ["head_dense"] and facts["head"] is None
    assert json.loads((out / "labels.json").read_text()) == [5, 6, 7, 8, 9]


def test_a_train_runs_own_finetune_section_is_taken_as_written(base, tmp_path):
    """`mlcli train` ignores the finetune section, so a base config may carry the fine-tuning plan."""
    parent = tmp_path / "planned"
    parent.mkdir()
    for name in ("model.keras", "run.json", "labels.json"):
        shutil.copy(base / name, parent / name)
    config = config_of(base)
    config["finetune"] = {"freeze": [0, 1], "unfreeze": [],
                          "head": {"replace": 1, "layers": [{"type": "Dense", "units": 5, "activation": "softmax"}]}}
    config["data"]["classes"] = [5, 6, 7, 8, 9]
    (parent / "config.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "ft"
    ok(run_cli("finetune", "--from", parent, "--output", out, "--set", "training.epochs=1", "-q"))
    facts = assert_frozen_kept_and_trained_changed(parent / "model.keras", out)
    assert facts["trainable"] == ["head_dense"] and facts["head"]["replaced"] == parent_names(base)[2:]
    assert config_of(out)["model"] == config_of(base)["model"]
    assert json.loads((out / "labels.json").read_text()) == [5, 6, 7, 8, 9]


# ---- selectors, from a run directory with no CONFIG ----------------------------------------------------

@pytest.mark.parametrize("sets, frozen", [
    (["finetune.freeze=[0]"], [0]),
    (["finetune.freeze=[-1]"], [2]),
    (["finetune.freeze=[NAME1]"], [1]),
    (["finetune.freeze=['dense*']", "finetune.unfreeze=[-1]"], [0, 1]),
    (["finetune.freeze=[0, 1, 2]", "finetune.unfreeze=[NAME0]"], [1, 2]),
], ids=["index", "negative-index", "name", "glob-then-unfreeze", "unfreeze-by-name"])
def test_selectors_from_a_run_directory_with_no_config(base, tmp_path, sets, frozen):
    names = parent_names(base)
    assert all(name.startswith("dense") for name in names)
    sets = [s.replace("NAME0", names[0]).replace("NAME1", names[1]) for s in sets]
    out = tmp_path / "ft"
    args = ["finetune", "--from", base, "--output", out, "--set", "training.epochs=1"]
    for item in sets:
        args += ["--set", item]
    ran = run_cli(*args)
    ok(ran)
    facts = assert_frozen_kept_and_trained_changed(base / "model.keras", out)
    assert facts["frozen"] == [names[i] for i in frozen]
    assert facts["trainable"] == [n for i, n in enumerate(names) if i not in frozen]
    # With no CONFIG every section comes from the parent; the run is named after it.
    config = config_of(out)
    assert config["data"] == config_of(base)["data"] and config["name"] == "digits_base-finetune"
    assert json.loads((out / "labels.json").read_text()) == [0, 1, 2, 3, 4]


def test_from_a_keras_file_with_a_full_config(base, tmp_path, write):
    lone = tmp_path / "elsewhere" / "parent.keras"
    lone.parent.mkdir()
    shutil.copy(base / "model.keras", lone)
    config = write("new.yaml", textwrap.dedent("""\
        data:
          train: builtin:digits/train
          test: builtin:digits/test
          classes: [5, 6, 7, 8, 9]
        finetune:
          freeze: ["dense*"]
          head: {replace: 1, layers: [{type: Dense, units: 5, activation: softmax}]}
        training: {epochs: 2}
        """))
    out = tmp_path / "ft"
    ran = run_cli("finetune", config, "--from", lone, "--output", out, "--json")
    ok(ran)
    record = manifest(out)
    assert record["parent"]["path"] == str(lone.resolve()) and record["parent"]["run_dir"] is None
    assert record["parent"]["sha256"] == hashlib.sha256(lone.read_bytes()).hexdigest()
    names = parent_names(base)
    facts = assert_frozen_kept_and_trained_changed(lone, out)
    assert facts["frozen"] == names[:2] and facts["trainable"] == ["head_dense"]
    # No config.yaml came with the file: model.layers is described from the checkpoint itself.
    layers = config_of(out)["model"]["layers"]
    assert [(s["type"], s["name"], s["units"], s["activation"]) for s in layers] == [
        ("Dense", names[0], 64, "relu"), ("Dense", names[1], 64, "relu"), ("Dense", names[2], 5, "softmax")]
    assert config_of(out)["optimizer"] == {"type": "adam", "learning_rate": 0.01}  # schema defaults
    assert json.loads((out / "labels.json").read_text()) == [5, 6, 7, 8, 9]
    assert json.loads(ran.stdout)["parameters"]["trainable"] == 325


def test_best_keras_of_a_run_uses_that_runs_config(base, tmp_path):
    out = tmp_path / "ft"
    ok(run_cli("finetune", "--from", base / "best.keras", "--output", out, "--set", "training.epochs=1",
               "--set", "finetune.freeze=[0, 1]", "--quiet"))
    assert manifest(out)["parent"]["run_dir"] == str(base.resolve())
    assert config_of(out)["model"] == config_of(base)["model"]
    assert_frozen_kept_and_trained_changed(base / "best.keras", out)


# ---- BatchNormalization: frozen means inference mode ------------------------------------------------

@pytest.fixture(scope="module")
def bn_parent(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bn")
    config = folder / "bn.yaml"
    config.write_text(textwrap.dedent("""\
        data: {train: builtin:digits/train, validation: 0.2, classes: [0, 1, 2, 3, 4], normalize: none}
        model:
          layers:
            - {type: Dense, units: 16, activation: relu}
            - {type: BatchNormalization}
            - {type: Dense, units: 5, activation: softmax}
        training: {epochs: 1, batch_size: 64}
        runtime: {deterministic: true}
        """))
    ok(run_cli("train", config, "--output", folder / "run", "--quiet"))
    return folder / "run"


def test_frozen_batch_normalization_runs_in_inference_mode(bn_parent, tmp_path):
    out = tmp_path / "ft"
    ran = run_cli("finetune", "--from", bn_parent, "--output", out, "--set", "finetune.freeze=[1]",
                  "--set", "training.epochs=1")
    ok(ran)
    bn = parent_names(bn_parent)[1]
    # gamma, beta, and the moving mean and variance: all exactly as the parent left them.
    facts = assert_frozen_kept_and_trained_changed(bn_parent / "model.keras", out)
    assert facts["frozen"] == [bn]
    assert f"frozen BatchNormalization ({bn}) runs in inference mode" in ran.stderr
    assert "frozen (inference mode)" in ran.stderr  # in the table
    assert "the parent model has no mlcli normalization layer" in ran.stderr  # trained with normalize: none


def test_trainable_batch_normalization_updates_its_statistics(bn_parent, tmp_path):
    out = tmp_path / "ft"
    ran = run_cli("finetune", "--from", bn_parent, "--output", out, "--set", "finetune.freeze=[0]",
                  "--set", "training.epochs=1")
    ok(ran)
    bn = parent_names(bn_parent)[1]
    assert_frozen_kept_and_trained_changed(bn_parent / "model.keras", out)  # moving stats included
    assert f"trainable BatchNormalization ({bn}) updates its moving mean" in ran.stderr


# ---- what train offers works the same ----------------------------------------------------------------

def test_json_quiet_device_and_a_failed_gate(base, tmp_path):
    out = tmp_path / "ft"
    ran = run_cli("finetune", "--from", base, "--output", out, "--set", "training.epochs=1",
                  "--set", "finetune.freeze=[0]", "--json", "--quiet", "--device", "cpu",
                  "--fail-under", "test_accuracy=1.01")
    assert ran.exit_code == 5, ran
    doc = json.loads(ran.stdout)  # exactly one document, even when the gate fails
    assert doc["device"] == "cpu" and doc["status"] == "completed"
    assert doc["finetune"]["frozen"] == parent_names(base)[:1]
    assert ran.stderr.strip().startswith("gate failed: test_accuracy")
    assert "fine-tuning" not in ran.stderr  # --quiet: no table
    assert (out / "model.keras").is_file() and manifest(out)["status"] == "completed"


def test_unknown_gate_metric_is_refused_before_training(base, tmp_path):
    refused(run_cli("finetune", "--from", base, "--output", tmp_path / "ft", "--fail-under", "bogus=1"),
            2, "gate metric 'bogus' is never computed")
    assert not (tmp_path / "ft").exists()


def test_deterministic_runs_are_bitwise_repeatable(base, tmp_path):
    args = ["--from", base, "--set", "training.epochs=1", "--set", "finetune.freeze=[0]",
            "--set", "finetune.head={replace: 1, layers: [{type: Dense, units: 5, activation: softmax}]}", "-q"]
    assert config_of(base)["runtime"]["deterministic"] is True  # inherited by the finetune runs
    ok(run_cli("finetune", *args, "--output", tmp_path / "a"))
    ok(run_cli("finetune", *args, "--output", tmp_path / "b"))
    first, second = layer_weights(tmp_path / "a" / "model.keras"), layer_weights(tmp_path / "b" / "model.keras")
    assert first.keys() == second.keys()
    for name in first:
        for x, y in zip(first[name], second[name]):
            assert np.array_equal(x, y), name


def test_interrupted_finetune_resumes_with_the_same_frozen_layers(base, tmp_path):
    out = tmp_path / "ft"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(
        [sys.executable, "-m", "mlcli", "finetune", "--from", str(base), "--output", str(out),
         "--set", "training.epochs=40", "--set", "finetune.freeze=[0]"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=REPO,
    )
    try:
        for line in process.stderr:
            if line.startswith("epoch 1/40"):
                process.send_signal(signal.SIGTERM)
                break
        process.stderr.read()
        assert process.wait(timeout=120) == 130
    finally:
        if process.poll() is None:
            process.kill()
    record = manifest(out)
    assert record["status"] == "interrupted" and record["parent"]["run_dir"] == str(base.resolve())
    done = record["interrupted"]["epochs_completed"]
    assert 1 <= done < 40
    point, kept = saved_point(out), kept_history(out)
    assert point["epochs_completed"] == done and len(kept) == 1 + done
    ran = run_cli("finetune", "--resume", out)
    ok(ran)
    assert_resumed(out, point, kept, ran.stderr)
    assert manifest(out)["status"] == "completed" and manifest(out)["epochs_completed"] == 40
    facts = assert_frozen_kept_and_trained_changed(base / "model.keras", out)
    assert facts["frozen"] == parent_names(base)[:1]


# ---- errors: exit code, message, no traceback ----------------------------------------------------------

def test_a_model_section_is_refused(base, write):
    config = write("ft.yaml", "data: {classes: [5, 6]}\nmodel:\n  layers: [{type: Dense, units: 2}]\n")
    refused(run_cli("finetune", config, "--from", base), 2,
            "ft.yaml:2: model:", "the architecture and weights from --from", "finetune.head")


def test_a_model_section_reached_through_extends_is_refused(base, write):
    write("trained.yaml", "data: {train: builtin:digits/train}\nmodel:\n  layers: [{type: Dense, units: 10}]\n")
    config = write("ft.yaml", "extends: trained.yaml\nfinetune: {freeze: [0]}\n")
    refused(run_cli("finetune", config, "--from", base), 2, "trained.yaml:2: model:", "--from")


def test_a_model_set_is_refused(base):
    refused(run_cli("finetune", "--from", base, "--set", "model.layers.0.units=3"), 2,
            "--set model.layers.0.units=3", "the architecture and weights from --from")


@pytest.mark.parametrize("sets, where, selector", [
    (["finetune.freeze=['nope*']"], "finetune.freeze.0", "'nope*'"),
    (["finetune.freeze=[0]", "finetune.unfreeze=[0, missing]"], "finetune.unfreeze.1", "'missing'"),
    (["finetune.freeze=[5]"], "finetune.freeze.0", "5"),
], ids=["glob", "unfreeze-name", "index"])
def test_a_selector_matching_nothing_lists_the_layers(base, sets, where, selector):
    args = ["finetune", "--from", base]
    for item in sets:
        args += ["--set", item]
    names = parent_names(base)
    refused(run_cli(*args), 2, f"{where}: selector {selector} matches no layer",
            f"0: {names[0]} (Dense); 1: {names[1]} (Dense); 2: {names[2]} (Dense)")


def test_a_selector_counts_the_new_head(base, tmp_path):
    # head_* names the new layers: a glob that matches only them is valid, one that matches nothing is not.
    head = "finetune.head={replace: 1, layers: [{type: Dense, units: 8, activation: relu}, " \
           "{type: Dense, units: 5, activation: softmax}]}"
    refused(run_cli("finetune", "--from", base, "--set", head, "--set", "finetune.freeze=[4]"), 2,
            "selector 4 matches no layer", "2: head_dense (Dense); 3: head_dense_1 (Dense)")
    out = tmp_path / "ft"
    ok(run_cli("finetune", "--from", base, "--set", head, "--set", "finetune.freeze=[0, 1, 'head_dense']",
               "--set", "training.epochs=1", "--output", out, "-q"))
    assert manifest(out)["finetune"]["trainable"] == ["head_dense_1"]
    # -1 reaches the new head's last layer: allowed, with a warning that it keeps random weights.
    ran = run_cli("finetune", "--from", base, "--set", head, "--set", "finetune.freeze=[0, 1, -1]",
                  "--set", "training.epochs=1", "--output", tmp_path / "ft2")
    ok(ran)
    assert "warning: head_dense_1 is new (from finetune.head) and frozen, so it keeps its random initial " \
           "weights" in ran.stderr
    assert "warning:" not in run_cli("finetune", "--from", base, "--set", head, "--set", "training.epochs=1",
                                     "--output", tmp_path / "ft3").stderr


def test_a_head_whose_width_does_not_fit_the_classes(base, write):
    config = write("ft.yaml", textwrap.dedent("""\
        data: {classes: [5, 6, 7, 8, 9]}
        finetune:
          freeze: [0, 1]
          head:
            replace: 1
            layers:
              - {type: Dense, units: 3, activation: softmax}
        """))
    refused(run_cli("finetune", config, "--from", base), 2,
            "ft.yaml:7: finetune.head.layers.0:", "has 3 units but the data has 5 classes (5, 6, 7, 8, 9)",
            "set its units to 5")


def test_a_kept_output_layer_that_does_not_fit_the_classes(base):
    refused(run_cli("finetune", "--from", base, "--set", "data.classes=null"), 2,
            "the parent's last layer has 5 units but the data has 10 classes",
            "finetune.head: {replace: 1, layers: [{type: Dense, units: 10, activation: softmax}]}")


def test_a_head_name_already_in_the_model(base):
    name = parent_names(base)[0]
    head = f"finetune.head={{replace: 1, layers: [{{type: Dense, units: 5, name: {name}}}]}}"
    refused(run_cli("finetune", "--from", base, "--set", head), 2,
            "finetune.head.layers.0.name:", f"{name!r} cannot name a new layer")


def test_freezing_everything_is_refused(base, tmp_path):
    refused(run_cli("finetune", "--from", base, "--set", "finetune.freeze=['*']", "--output", tmp_path / "ft"),
            2, "every layer is frozen")
    assert not (tmp_path / "ft").exists()


def test_a_keras_file_without_config_needs_the_data_section(base, tmp_path):
    lone = tmp_path / "parent.keras"
    shutil.copy(base / "model.keras", lone)
    refused(run_cli("finetune", "--from", lone), 2, "has no run's config.yaml beside it",
            "the data section must come from CONFIG")


def test_data_of_another_width_is_a_data_error(base, write):
    data = write("narrow.csv", "a,b,c,label\n" + "".join(f"{i},{i + 1},{i * 2},{i % 2}\n" for i in range(20)))
    refused(run_cli("finetune", "--from", base, "--set", f"data.train={data}", "--set", "data.test=null",
                    "--set", "data.classes=null"),
            3, "3 feature(s) per row", "takes 64 feature(s) per row")


def test_the_parents_columns_in_another_order_are_a_data_error(base, tmp_path):
    with gzip.open(DIGITS_TEST, "rt") as handle:
        lines = handle.read().splitlines()
    header = lines[0].split(",")
    order = [1, 0] + list(range(2, len(header)))  # swap the first two feature columns
    shuffled = tmp_path / "swapped.csv"
    shuffled.write_text("\n".join(",".join(line.split(",")[i] for i in order) for line in lines) + "\n")
    refused(run_cli("finetune", "--from", base, "--set", f"data.train={shuffled}"), 3,
            f"feature column 1 is {header[1]!r} here but {header[0]!r}", "data.features")


def test_keeping_the_output_layer_for_other_classes_is_refused(base, tmp_path):
    # Issue 14 item 3: the parent's outputs for 0-4 must not silently become 5-9, nor 4 become 5.
    for classes, others in (("[5,6,7,8,9]", "5, 6, 7, 8, 9"), ("[0,1,2,3,5]", "5")):
        out = tmp_path / f"ft{len(others)}"
        refused(run_cli("finetune", "--from", base, "--output", out, "--set", f"data.classes={classes}",
                        "--set", "finetune.freeze=[0,1]", "--set", "training.epochs=1"), 2,
                f"--from {(base / 'model.keras').resolve()}: finetune.head: the parent's output layer is kept "
                "(no finetune.head), and its 5 outputs stand for classes 0, 1, 2, 3, 4; this data's labels include "
                f"{others}, which none of them stands for — a new head is needed: finetune.head: {{replace: 1, "
                f"layers: [{{type: Dense, units: {classes.count(',') + 1}, activation: softmax}}]}}")
        assert not out.exists()
    # The shipped example's config with its head taken away: the same refusal, placed at the config.
    refused(run_cli("finetune", CONFIGS / "digits_finetune.yaml", "--from", base, "--set", "finetune.head=null",
                    "--output", tmp_path / "example"), 2,
            "digits_finetune.yaml: finetune.head: the parent's output layer is kept", "a new head is needed")
    assert not (tmp_path / "example").exists()


def test_renamed_feature_columns_are_fed_by_position_and_said(base, tmp_path):
    with gzip.open(DIGITS_TEST, "rt") as handle:
        lines = handle.read().splitlines()
    header = ["label" if name == "label" else f"f{i}" for i, name in enumerate(lines[0].split(","))]
    renamed = tmp_path / "renamed.csv"
    renamed.write_text("\n".join([",".join(header), *lines[1:]]) + "\n")
    ran = run_cli("finetune", "--from", base, "--output", tmp_path / "ft", "--set", f"data.train={renamed}",
                  "--set", "data.test=null", "--set", "finetune.freeze=[0]", "--set", "training.epochs=1")
    ok(ran)
    assert "the feature columns are named differently from the parent's ('f0'… vs 'pixel_0_0'…)" in ran.stderr


@pytest.mark.parametrize("make, texts", [
    ("missing", ["--from {p}: not found"]),
    ("not-a-run", ["is not an mlcli run directory"]),
    ("text-file", ["expected a run directory or a .keras file"]),
    ("not-a-zip", ["is not a complete Keras archive"]),
    ("functional", ["holds a Functional model", "Sequential"]),
    ("no-weights", ["is not a complete Keras archive"]),
    ("run-without-model", ["the run has no model.keras yet (status: interrupted)", "mlcli train --resume"]),
])
def test_a_bad_checkpoint_is_a_usage_error(base, tmp_path, make, texts):
    path = tmp_path / "ckpt"
    if make == "not-a-run":
        path.mkdir()
        (path / "notes.txt").write_text("hello")
    elif make == "text-file":
        path = tmp_path / "model.txt"
        path.write_text("hello")
    elif make == "not-a-zip":
        path = tmp_path / "model.keras"
        path.write_bytes(b"not a zip")
    elif make == "functional":
        import keras

        inputs = keras.Input(shape=(64,))
        path = tmp_path / "functional.keras"
        keras.Model(inputs, keras.layers.Dense(5)(inputs)).save(path)
    elif make == "no-weights":
        path = tmp_path / "broken.keras"
        with zipfile.ZipFile(base / "model.keras") as source, zipfile.ZipFile(path, "w") as target:
            target.writestr("config.json", source.read("config.json"))
            target.writestr("metadata.json", source.read("metadata.json"))
    elif make == "run-without-model":
        path.mkdir()
        shutil.copy(base / "config.yaml", path / "config.yaml")
        (path / "run.json").write_text(json.dumps({"status": "interrupted"}))
    texts = [t.format(p=path) for t in texts]
    # The data section is given: a standalone .keras file carries none, and it must not be what fails.
    refused(run_cli("finetune", "--from", path, "--set", "data.train=builtin:digits/train",
                    "--set", "data.classes=[0,1,2,3,4]", "--set", "training.epochs=1", "--output", tmp_path / "out"),
            2, *texts)
    assert not (tmp_path / "out").exists()


def test_usage_errors(base, example, tmp_path):
    refused(run_cli("finetune", "--set", "training.epochs=1"), 2, "mlcli finetune needs --from CKPT")
    refused(run_cli("finetune", "--resume", base), 2, "is a train run, not a finetune run",
            f"mlcli train --resume {base}")
    out, _, _ = example
    refused(run_cli("finetune", "--resume", out, "--from", base), 2, "drop --from")
    refused(run_cli("finetune", tmp_path, "--from", base), 2, "is a directory, not a config",
            "mlcli finetune --resume")


def test_resume_refuses_a_parent_that_changed_or_disappeared(base, tmp_path):
    lone = tmp_path / "parent.keras"
    shutil.copy(base / "model.keras", lone)
    out = tmp_path / "ft"
    ok(run_cli("finetune", "--from", lone, "--output", out, "--set", "data.train=builtin:digits/train",
               "--set", "data.classes=[0,1,2,3,4]", "--set", "finetune.freeze=[0]", "--set", "training.epochs=1",
               "-q"))
    # A run killed before its first epoch ended: no resume state, so the model is rebuilt from the parent.
    shutil.rmtree(out / "state")
    (out / "model.keras").unlink()
    record = manifest(out)
    record["status"] = "interrupted"
    (out / "run.json").write_text(json.dumps(record))
    with open(lone, "ab") as handle:
        handle.write(b"\0")
    refused(run_cli("finetune", "--resume", out), 2, f"the parent checkpoint {lone.resolve()} has changed")
    lone.unlink()
    refused(run_cli("finetune", "--resume", out), 2, f"the parent checkpoint {lone.resolve()} is gone")


# ---- config errors never import TensorFlow ---------------------------------------------------------------

_WRAPPER = textwrap.dedent("""\
    import runpy, sys
    sys.argv = ["mlcli", *sys.argv[1:]]
    code = 0
    try:
        runpy.run_module("mlcli", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    print("tensorflow imported:", "tensorflow" in sys.modules, file=sys.stderr)
    sys.exit(code)
""")


@pytest.mark.parametrize("sets, text", [
    (["model.layers.0.units=3"], "the architecture and weights from --from"),
    (["finetune.freeze=['nope']"], "matches no layer"),
    (["finetune.head={replace: 1, layers: [{type: Dense, units: 5, name: head_x}, {type: Dense, name: head_x}]}"],
     "cannot name a new layer"),
], ids=["model-set", "selector", "head-name"])
def test_config_errors_do_not_import_tensorflow(base, sets, text):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("MLCLI_DEBUG", None)
    args = ["finetune", "--from", str(base)]
    for item in sets:
        args += ["--set", item]
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=REPO)
    assert done.returncode == 2, done.stderr
    assert text in done.stderr
    assert "tensorflow imported: False" in done.stderr, done.stderr


def test_data_with_some_of_the_parents_classes_keeps_its_output_layer(base, tmp_path):
    # Digits 1-3 only, from a parent of 0-4: the parent's five outputs keep their meaning.
    out = tmp_path / "subset"
    ran = run_cli("finetune", "--from", base, "--output", out, "--set", "data.classes=[1, 2, 3]",
                  "--set", "training.epochs=2")
    ok(ran)
    assert "the data has 3 of the parent's 5 classes (none of 0, 4): the parent's classes and output layer " \
           "are kept" in ran.stderr
    assert json.loads((out / "labels.json").read_text()) == [0, 1, 2, 3, 4]
    evaluated = run_cli("evaluate", out, "--json")
    ok(evaluated)
    document = json.loads(evaluated.stdout)
    assert document["classes"] == [0, 1, 2, 3, 4] and document["samples"] == manifest(out)["rows"]["test"]
    # The same from a copy of the parent's model.keras (its classes travel inside it), with a full config.
    copied = tmp_path / "parent.keras"
    shutil.copy(base / "model.keras", copied)
    (tmp_path / "c.yaml").write_text(
        "data: {train: builtin:digits/train, test: builtin:digits/test, classes: [1, 2, 3]}\ntraining: {epochs: 1}\n")
    ok(run_cli("finetune", tmp_path / "c.yaml", "--from", copied, "--output", tmp_path / "copy"))
    assert json.loads((tmp_path / "copy" / "labels.json").read_text()) == [0, 1, 2, 3, 4]
    # A class the parent never had still needs a new head.
    refused(run_cli("finetune", "--from", base, "--set", "data.classes=[3, 4, 5]"), 2,
            "the parent's last layer has 5 units but the data has 3 classes")
