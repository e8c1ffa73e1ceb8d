"""Bad configs through the real CLI (`mlcli validate FILE`, in-process): exit 2, key path, file:line,
a message that says what to do, and never a traceback (docs/contract.md §2, §3)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import Ran, run_cli

TRAIN = "data:\n  train: builtin:digits/train\n"


def assert_config_error(ran: Ran, where: str, path: str | None, *fragments: str) -> None:
    """Exit 2, `where` (file:line) with the key path right after it, each fragment, no traceback."""
    assert ran.exit_code == 2, ran
    assert ran.exception is None, ran
    assert "Traceback" not in ran.stderr and "Traceback" not in ran.stdout, ran
    assert ran.stderr.startswith("config error"), ran
    located = f"{where}: {path}:" if path else f"{where}:"
    assert located in ran.stderr, f"expected {located!r}\n{ran}"
    for fragment in fragments:
        assert fragment in ran.stderr, f"expected {fragment!r}\n{ran}"
    assert ran.stdout == "", ran  # stdout is for data only


def validate_text(write, text: str, *args: str, name: str = "bad.yaml") -> Ran:
    path = write(name, textwrap.dedent(text))
    return run_cli("validate", path, *args)


# (id, YAML, line, key path, message fragments)
BAD = [
    # ---- unknown keys at every depth ----
    ("unknown-top", TRAIN + "trainig:\n  epochs: 3\n", 3, "trainig",
     ["unknown key", "did you mean 'training'?"]),
    ("unknown-top-no-close-match", TRAIN + "epochs: 3\n", 3, "epochs",
     ["unknown key — expected one of: name, seed, extends, data, model"]),
    ("unknown-data", TRAIN + "  lable: y\n", 3, "data.lable", ["unknown key", "did you mean 'label'?"]),
    ("unknown-model", TRAIN + "model:\n  layer:\n    - {type: Dense, units: 10}\n", 4, "model.layer",
     ["did you mean 'layers'?"]),
    ("unknown-training", TRAIN + "training:\n  batch_size: 8\n  epoch: 3\n", 5, "training.epoch",
     ["unknown key — expected one of: epochs, batch_size", "did you mean 'epochs'?"]),
    ("unknown-early-stopping", TRAIN + "training:\n  early_stopping:\n    monitor: val_loss\n    patiense: 3\n",
     6, "training.early_stopping.patiense", ["did you mean 'patience'?"]),
    ("unknown-checkpoint", TRAIN + "training:\n  checkpoint:\n    monitr: val_loss\n", 5,
     "training.checkpoint.monitr", ["did you mean 'monitor'?"]),
    ("unknown-runtime", TRAIN + "runtime:\n  device: cpu\n  precison: float32\n", 5, "runtime.precison",
     ["did you mean 'precision'?"]),
    ("unknown-finetune", TRAIN + "finetune:\n  freez: [0]\n", 4, "finetune.freez", ["did you mean 'freeze'?"]),
    ("unknown-finetune-head", TRAIN + "finetune:\n  head:\n    replace: 1\n    layer: []\n", 6,
     "finetune.head.layer", ["unknown key — expected one of: replace, layers", "did you mean 'layers'?"]),
    # ---- wrong types ----
    ("string-for-int", TRAIN + "training:\n  epochs: '10'\n", 4, "training.epochs",
     ["got '10' (a string) — expected an integer"]),
    ("float-for-int", TRAIN + "training:\n  epochs: 3.5\n", 4, "training.epochs",
     ["got 3.5 (a number) — expected an integer"]),
    ("bool-for-int", TRAIN + "training:\n  epochs: true\n", 4, "training.epochs",
     ["got True (a boolean) — expected an integer"]),
    ("bool-for-number", TRAIN + "optimizer:\n  type: adam\n  learning_rate: true\n", 5,
     "optimizer.learning_rate", ["got True", "expected a positive number"]),
    ("string-for-number", TRAIN + "optimizer:\n  learning_rate: fast\n", 4, "optimizer.learning_rate",
     ["got 'fast'", "expected a positive number or a schedule"]),
    ("list-for-mapping", TRAIN + "training:\n  - epochs\n", 3, "training",
     ["got ['epochs'] (a list) — expected a mapping"]),
    ("list-for-data-section", "data: [1, 2]\n", 1, "data", ["(a list) — expected a mapping"]),
    ("mapping-for-list", TRAIN + "model:\n  layers: {type: Dense}\n", 4, "model.layers",
     ["(a mapping) — expected a list"]),
    ("string-for-list", TRAIN + "metrics: accuracy\n", 3, "metrics", ["expected a list such as [accuracy]"]),
    ("string-for-bool", TRAIN + "runtime:\n  deterministic: 'yes'\n", 4, "runtime.deterministic",
     ["got 'yes' (a string) — expected true or false"]),
    ("bool-for-mapping", TRAIN + "training:\n  early_stopping: true\n", 4, "training.early_stopping",
     ["expected a mapping"]),
    ("string-for-seed", "seed: abc\n" + TRAIN, 1, "seed", ["expected an integer"]),
    ("layer-not-a-mapping", TRAIN + "model:\n  layers:\n    - Dense\n", 5, "model.layers.0",
     ["got 'Dense' (a string) — expected a mapping"]),
    ("layer-without-type", TRAIN + "model:\n  layers:\n    - {units: 10}\n", 5, "model.layers.0.type",
     ["required key is missing"]),
    ("no-layers", TRAIN + "model:\n  layers: []\n", 4, "model.layers", ["is empty", "at least 1"]),
    # ---- enums, with did-you-mean ----
    ("enum-task", TRAIN + "  task: clasification\n", 3, "data.task",
     ["got 'clasification'", "'auto', 'classification' or 'regression'", "did you mean 'classification'?"]),
    ("enum-normalize", TRAIN + "  normalize: standrd\n", 3, "data.normalize", ["did you mean 'standard'?"]),
    ("enum-distribute", TRAIN + "runtime:\n  distribute: mirored\n", 4, "runtime.distribute",
     ["did you mean 'mirrored'?"]),
    ("enum-precision", TRAIN + "runtime:\n  precision: mixed_float61\n", 4, "runtime.precision",
     ["did you mean 'mixed_float16'?"]),
    ("enum-checkpoint-mode", TRAIN + "training:\n  checkpoint: {monitor: val_loss, mode: minimum}\n", 4,
     "training.checkpoint.mode", ["did you mean 'min'?"]),
    ("device-tpu", TRAIN + "runtime:\n  device: tpu\n", 4, "runtime.device",
     ["'tpu' is not a device", "auto, cpu, gpu, or gpu:0,1"]),
    # ---- bad values ----
    ("validation-0", TRAIN + "  validation: 0\n", 3, "data.validation", ["fraction 0 is outside (0, 1)"]),
    ("validation-1", TRAIN + "  validation: 1\n", 3, "data.validation", ["fraction 1 is outside (0, 1)"]),
    ("validation-1.5", TRAIN + "  validation: 1.5\n", 3, "data.validation",
     ["fraction 1.5 is outside (0, 1)", "or null for no validation"]),
    ("negative-batch-size", TRAIN + "training:\n  batch_size: -4\n", 4, "training.batch_size",
     ["got -4", "greater than or equal to 1"]),
    ("epochs-0", TRAIN + "training:\n  epochs: 0\n", 4, "training.epochs", ["got 0", "greater than or equal to 1"]),
    ("learning-rate-0", TRAIN + "optimizer:\n  learning_rate: 0\n", 4, "optimizer.learning_rate",
     ["greater than 0"]),
    ("negative-patience", TRAIN + "training:\n  early_stopping:\n    patience: -1\n", 5,
     "training.early_stopping.patience", ["greater than or equal to 0"]),
    ("checkpoint-every-0", TRAIN + "training:\n  checkpoint_every_steps: 0\n", 4,
     "training.checkpoint_every_steps", ["greater than or equal to 1"]),
    ("empty-label-list", TRAIN + "  label: []\n", 3, "data.label", ["non-empty list of column names"]),
    ("bool-selector", TRAIN + "finetune:\n  freeze: [true]\n", 4, "finetune.freeze",
     ["selector True", "a layer index, a layer name, or a glob"]),
    ("bad-run-name", "name: my run/1\n" + TRAIN, 1, "name", ["cannot name a run directory"]),
    # ---- names are Keras names, never import paths ----
    ("dotted-layer-type", TRAIN + "model:\n  layers:\n    - {type: keras.layers.Dense, units: 10}\n", 5,
     "model.layers.0.type", ["'keras.layers.Dense' is not a Keras name", "import paths are not allowed"]),
    ("dotted-head-layer-type", TRAIN + "finetune:\n  head:\n    replace: 1\n    layers:\n      - {type: os.system}\n",
     7, "finetune.head.layers.0.type", ["'os.system' is not a Keras name"]),
    ("dotted-loss", TRAIN + "loss: keras.losses.mse\n", 3, "loss", ["is not a Keras loss name"]),
    # ---- cross-field checks ----
    ("head-replace-too-large", TRAIN + "finetune:\n  head:\n    replace: 5\n", 5, "finetune.head.replace",
     ["5 is more than the 3 layer(s) in model.layers", "at most 3"]),
    ("freeze-out-of-range", TRAIN + "finetune:\n  freeze: [0, 7]\n", 4, "finetune.freeze.1",
     ["layer index 7 is out of range", "from -3 to 2"]),
    ("unfreeze-out-of-range", TRAIN + "finetune:\n  unfreeze: [-4]\n", 4, "finetune.unfreeze.0",
     ["layer index -4 is out of range"]),
    ("early-stopping-val-without-validation",
     TRAIN + "  validation: null\ntraining:\n  early_stopping: {monitor: val_loss}\n", 5,
     "training.early_stopping.monitor", ["'val_loss' is not computed during training",
                                         "val_ metrics need data.validation"]),
    ("early-stopping-unconfigured-metric", TRAIN + "training:\n  early_stopping:\n    monitor: val_auc\n", 5,
     "training.early_stopping.monitor", ["'val_auc' is not computed during training",
                                         "loss, accuracy, val_loss, val_accuracy"]),
    ("checkpoint-unconfigured-metric", TRAIN + "training:\n  checkpoint: {monitor: val_acc}\n", 4,
     "training.checkpoint.monitor", ["'val_acc' is not computed during training"]),
    ("regression-with-crossentropy", TRAIN + "  task: regression\nloss: categorical_crossentropy\n", 4, "loss",
     ["categorical_crossentropy needs class labels but data.task is regression", "mse or mae"]),
    ("classification-several-labels", TRAIN + "  task: classification\n  label: [a, b]\n", 4, "data.label",
     ["several label columns are for regression"]),
    # ---- required keys ----
    ("missing-data-train", "data:\n  validation: 0.2\n", 1, "data.train",
     ["required key is missing", "train: builtin:digits/train"]),
    ("missing-data-section", "training:\n  epochs: 2\n", 1, "data", ["required section is missing"]),
    ("empty-file", "", 1, "data", ["required section is missing", "data: {train: builtin:digits/train}"]),
    ("comments-only", "# nothing yet\n", 1, "data", ["required section is missing"]),
    ("null-data-section", "data:\n", 1, "data", ["got None (null) — expected a mapping"]),
    # ---- the YAML itself ----
    ("duplicate-key", TRAIN + "training:\n  epochs: 3\n  batch_size: 8\n  epochs: 4\n", 6, "training.epochs",
     ["duplicate key (first given at line 4)"]),
    ("duplicate-section", TRAIN + "training: {epochs: 1}\n" + TRAIN, 4, "data",
     ["duplicate key (first given at line 1)"]),
    ("syntax-indentation", TRAIN + "   validation: 0.2\n", 3, None,
     ["YAML syntax error", "mapping values are not allowed here"]),
    ("syntax-unclosed-list", "data:\n  train: builtin:digits/train\nmetrics: [accuracy\nseed: 1\n", 4, None,
     ["YAML syntax error"]),
    ("syntax-tab", "data:\n\ttrain: x.csv\n", 2, None, ["YAML syntax error", "'\\t'"]),
    ("undefined-alias", TRAIN + "training: *defaults\n", 3, None, ["found undefined alias 'defaults'"]),
    ("top-level-list", "- data\n- model\n", 1, None, ["the file holds a list — expected a mapping of sections"]),
    ("top-level-string", "just some words\n", 1, None, ["the file holds a string"]),
    ("non-string-key", TRAIN + "  yes: 1\n", 3, "data", ["key True is not a string", "quote it"]),
    ("custom-tag", "data:\n  train: !secret vault/key\n", 2, "data.train",
     ["YAML tag '!secret' is not allowed", "plain data only"]),
    ("python-tag", TRAIN + "name: !!python/object/apply:os.system ['echo hi']\n", 3, "name",
     ["python/object/apply:os.system", "is not allowed"]),
    ("extends-not-a-string", "extends: 3\n" + TRAIN, 1, "extends", ["got 3 — expected the path of a YAML file"]),
]


@pytest.mark.parametrize("text, line, path, fragments", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_config(write, text, line, path, fragments):
    ran = validate_text(write, text)
    assert_config_error(ran, f"bad.yaml:{line}", path, *fragments)


def test_there_are_at_least_30_distinct_bad_configs():
    assert len({case[1] for case in BAD}) == len(BAD) >= 30


def test_duplicate_key_names_both_lines(write):
    ran = validate_text(write, """\
        data:
          train: builtin:digits/train
        optimizer:
          learning_rate: 0.1
          type: sgd
          learning_rate: 0.2
        """)
    assert_config_error(ran, "bad.yaml:6", "optimizer.learning_rate", "duplicate key", "first given at line 4")


def test_python_object_tag_is_refused_and_never_executed(write, tmp_path):
    marker = tmp_path / "pwned"
    ran = validate_text(write, f"""\
        data:
          train: builtin:digits/train
        name: !!python/object/apply:os.system ["touch {marker}"]
        seed: !!python/object/apply:builtins.exec ["open('{marker}', 'w').close()"]
        """)
    assert_config_error(ran, "bad.yaml:3", "name", "not allowed")
    assert "bad.yaml:4: seed:" in ran.stderr
    assert not marker.exists()


def test_several_problems_are_reported_at_once(write):
    ran = validate_text(write, """\
        data:
          train: builtin:digits/train
          task: regresion
        training:
          epochs: 0
          batchsize: 3
        runtime:
          device: tpu
        finetune:
          head: {replace: 1, layer: []}
        """)
    assert ran.exit_code == 2, ran
    assert "config error: 5 problems:" in ran.stderr
    for located in ("bad.yaml:3: data.task:", "bad.yaml:5: training.epochs:", "bad.yaml:6: training.batchsize:",
                    "bad.yaml:8: runtime.device:", "bad.yaml:10: finetune.head.layer:"):
        assert located in ran.stderr, located
    assert "did you mean 'regression'?" in ran.stderr and "did you mean 'batch_size'?" in ran.stderr
    # Reported in file order, one problem per line.
    lines = [line for line in ran.stderr.splitlines() if "bad.yaml:" in line]
    assert len(lines) == 5
    assert [int(line.split("bad.yaml:")[1].split(":")[0]) for line in lines] == [3, 5, 6, 8, 10]


def test_cross_field_problems_are_reported_together(write):
    ran = validate_text(write, """\
        data:
          train: builtin:digits/train
          task: regression
        loss: binary_crossentropy
        finetune:
          freeze: [9]
          head: {replace: 4}
        """)
    assert ran.exit_code == 2, ran
    assert "3 problems" in ran.stderr
    for located in ("bad.yaml:4: loss:", "bad.yaml:6: finetune.freeze.0:", "bad.yaml:7: finetune.head.replace:"):
        assert located in ran.stderr, located


def test_layer_keys_are_keras_arguments_not_errors(write):
    ran = validate_text(write, """\
        data:
          train: builtin:digits/train
        model:
          layers:
            - {type: Dense, units: 32, activation: relu, kernel_initializer: he_normal, use_bias: false}
            - {type: Dropout, rate: 0.25, seed: 3}
            - {type: Dense, units: 10, activation: softmax}
        optimizer:
          type: adam
          beta_1: 0.8
          learning_rate: {type: CosineDecay, initial_learning_rate: 1e-2, decay_steps: 1000}
        """, "--print", name="ok.yaml")
    assert ran.exit_code == 0, ran
    printed = yaml.safe_load(ran.stdout)
    assert printed["model"]["layers"][0] == {
        "type": "Dense", "units": 32, "activation": "relu", "kernel_initializer": "he_normal", "use_bias": False,
    }
    assert printed["model"]["layers"][1]["seed"] == 3
    assert printed["optimizer"]["beta_1"] == 0.8
    assert printed["optimizer"]["learning_rate"]["initial_learning_rate"] == 0.01


def test_an_argument_the_keras_class_does_not_take_is_an_error(write):
    # Train passes a layer's keys to its Keras class, which would refuse this one: validate says so first.
    ran = validate_text(write, TRAIN + "model:\n  layers:\n    - {type: Dropout, rate: 0.25, some_future_keras_arg: 1}\n")
    assert_config_error(ran, "bad.yaml:5", "model.layers.0.some_future_keras_arg",
                        "layer Dropout has no argument 'some_future_keras_arg' — expected one of: rate, noise_shape")


@pytest.mark.parametrize("written, value", [("1e-3", 0.001), ("1E-3", 0.001), ("5e-4", 0.0005), (".5", 0.5),
                                            ("2.5e-2", 0.025)])
def test_scientific_notation_is_a_float(write, written, value):
    ran = validate_text(write, TRAIN + f"optimizer:\n  learning_rate: {written}\n", "--print", name="sci.yaml")
    assert ran.exit_code == 0, ran
    printed = yaml.safe_load(ran.stdout)
    assert isinstance(printed["optimizer"]["learning_rate"], float)
    assert printed["optimizer"]["learning_rate"] == pytest.approx(value)
    if written == "1e-3":
        assert "learning_rate: 0.001\n" in ran.stdout


# ---- extends ----------------------------------------------------------------------------------

def test_extends_cycle(write):
    write("a.yaml", "extends: b.yaml\n" + TRAIN)
    write("b.yaml", "seed: 3\nextends: a.yaml\n")
    ran = run_cli("validate", write("c.yaml", "extends: a.yaml\n"))
    # Pointed at the `extends:` line that closes the loop, naming the whole chain.
    assert_config_error(ran, "b.yaml:2", "extends", "extends cycle:", "remove one of the links")
    assert "c.yaml -> " in ran.stderr and "a.yaml -> " in ran.stderr and "b.yaml -> " in ran.stderr


def test_extends_itself(write):
    ran = run_cli("validate", write("self.yaml", TRAIN + "extends: self.yaml\n"))
    assert_config_error(ran, "self.yaml:3", "extends", "extends cycle:")


def test_extends_file_missing(write):
    ran = run_cli("validate", write("child.yaml", TRAIN + "extends: bases/nope.yaml\n"))
    assert_config_error(ran, "child.yaml:3", "extends", "'bases/nope.yaml' not found",
                        "paths are relative to this file")
    assert str(Path("bases") / "nope.yaml") in ran.stderr


BASE = """\
name: base
data:
  train: train.csv
  validation: 0.3
model:
  layers:
    - {type: Dense, units: 64, activation: relu}
    - {type: Dense, units: 64, activation: relu}
    - {type: Dense, units: 10, activation: softmax}
training:
  epochs: 5
  batch_size: 16
"""


def test_extends_relative_to_the_file_deep_merge_and_lists_replace(write, tmp_path, monkeypatch):
    write("shared/base.yaml", BASE)
    child = write("exp/child.yaml", textwrap.dedent("""\
        extends: ../shared/base.yaml
        model:
          layers:
            - {type: Dense, units: 10, activation: softmax}
        training:
          epochs: 7
        """))
    monkeypatch.chdir(tmp_path.parent)  # relative to the file, not to the working directory
    ran = run_cli("validate", child, "--print")
    assert ran.exit_code == 0, ran
    printed = yaml.safe_load(ran.stdout)
    assert printed["model"]["layers"] == [{"type": "Dense", "units": 10, "activation": "softmax"}]  # replaced
    assert printed["training"]["epochs"] == 7  # this file wins
    assert printed["training"]["batch_size"] == 16  # deep-merged from the base
    assert printed["data"]["validation"] == 0.3
    # A data path is relative to the file that wrote it: the base, in shared/.
    assert printed["data"]["train"] == str(tmp_path / "shared" / "train.csv")
    assert printed["name"] == "base"  # the base's name is inherited like any other key
    assert "extends" not in printed


def test_extends_chain_of_three(write):
    write("a/b/grand.yaml", BASE)
    write("a/parent.yaml", "extends: b/grand.yaml\ntraining:\n  batch_size: 4\n")
    ran = run_cli("validate", write("child.yaml", "extends: a/parent.yaml\nseed: 9\n"), "--print")
    assert ran.exit_code == 0, ran
    printed = yaml.safe_load(ran.stdout)
    assert (printed["seed"], printed["training"]["batch_size"], printed["training"]["epochs"]) == (9, 4, 5)


def test_error_in_the_base_points_at_the_base(write):
    write("sub/base.yaml", TRAIN + "training:\n  epoch: 3\n")
    ran = run_cli("validate", write("child.yaml", "extends: sub/base.yaml\nseed: 1\n"))
    assert_config_error(ran, "base.yaml:4", "training.epoch", "did you mean 'epochs'?")
    assert "child.yaml" not in ran.stderr


def test_error_in_the_child_points_at_the_child(write):
    write("sub/base.yaml", BASE)
    ran = run_cli("validate", write("child.yaml", "extends: sub/base.yaml\ntraining:\n  batch_size: many\n"))
    assert_config_error(ran, "child.yaml:3", "training.batch_size", "got 'many' (a string)")


def test_yaml_error_in_the_base_names_the_base(write):
    write("base.yaml", "data:\n  train: [x\n")
    ran = run_cli("validate", write("child.yaml", "extends: base.yaml\n"))
    assert_config_error(ran, "base.yaml:3", None, "YAML syntax error")


# ---- the file itself ----------------------------------------------------------------------------

def test_missing_config_file(tmp_path):
    ran = run_cli("validate", tmp_path / "nope.yaml")
    assert_config_error(ran, f"{tmp_path / 'nope.yaml'}", None, "file not found")


def test_directory_as_config(tmp_path):
    (tmp_path / "configs.d").mkdir()
    ran = run_cli("validate", tmp_path / "configs.d")
    assert_config_error(ran, str(tmp_path / "configs.d"), None, "is a directory", "expected a YAML config file")


def test_non_utf8_config(write):
    path = write("latin1.yaml", "name: café\ndata:\n  train: builtin:digits/train\n".encode("latin-1"))
    ran = run_cli("validate", path)
    assert_config_error(ran, "latin1.yaml", None, "is not UTF-8 text")


def test_binary_garbage_config(write):
    ran = run_cli("validate", write("garbage.yaml", bytes(range(256))))
    assert ran.exit_code == 2, ran
    assert "garbage.yaml" in ran.stderr and "Traceback" not in ran.stderr
