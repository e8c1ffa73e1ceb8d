"""DIR/plots/: curves.png after every run, confusion.png for classification with validation or test
data — valid PNG files of a sensible size with something drawn in them — and a plotting failure never
fails a finished run."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the PNG signature."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_sensible_png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    width, height = png_size(data)
    assert 300 <= width <= 3000 and 300 <= height <= 3000, (width, height)
    assert data.endswith(b"IEND\xaeB`\x82"), "the PNG is truncated"
    return width, height


# The curves' colours (matplotlib's first two): a blank or curve-less figure has neither.
TRAIN_COLOUR, VALIDATION_COLOUR = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)


def png_pixels(source) -> np.ndarray:
    """A PNG (a path or its bytes) decoded to RGB values in [0, 1]."""
    import io

    import matplotlib.image

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    return matplotlib.image.imread(io.BytesIO(data), format="png")[..., :3]


def pixels_of(rgb: np.ndarray, colour: tuple[int, int, int], tolerance: float = 0.12) -> int:
    return int((np.abs(rgb - np.array(colour) / 255).max(axis=-1) < tolerance).sum())


def assert_curves_drawn(source, validation: bool = True) -> None:
    """Each curve is at least its markers (one epoch: about 190 pixels of its colour; two: 1,000)."""
    rgb = png_pixels(source)
    assert pixels_of(rgb, TRAIN_COLOUR) >= 100, "no training curve drawn"
    if validation:
        assert pixels_of(rgb, VALIDATION_COLOUR) >= 100, "no validation curve drawn"
    else:
        assert pixels_of(rgb, VALIDATION_COLOUR) == 0, "a validation curve without validation data"


def assert_confusion_drawn(source) -> None:
    """Cells of at least half their row's share are strong blue: a matrix of counts covers 5-7% of the
    picture with them, the colour bar alone about 1% (an empty or all-zero matrix)."""
    rgb = png_pixels(source)
    strong_blue = float(((rgb[..., 2] - rgb[..., 0]) > 0.35).mean())
    assert strong_blue >= 0.04, f"the matrix looks empty ({strong_blue:.3f} of the picture in strong blue)"


@pytest.mark.slow
def test_a_classification_run_draws_curves_and_the_confusion_matrix(tmp_path):
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "run", "--quiet")
    assert ran.exit_code == 0, ran
    plots = tmp_path / "run" / "plots"
    assert sorted(p.name for p in plots.iterdir()) == ["confusion.png", "curves.png"]  # no temporaries left
    width, height = assert_sensible_png(plots / "curves.png")
    assert width > height  # loss and accuracy side by side
    assert_curves_drawn(plots / "curves.png")
    assert_sensible_png(plots / "confusion.png")
    assert_confusion_drawn(plots / "confusion.png")


@pytest.mark.slow
def test_a_regression_run_draws_curves_only(tmp_path):
    ran = run_cli("train", CONFIGS / "diabetes.yaml", "--output", tmp_path / "run", "--set", "training.epochs=1",
                  "--quiet")
    assert ran.exit_code == 0, ran
    plots = tmp_path / "run" / "plots"
    assert [p.name for p in plots.iterdir()] == ["curves.png"]
    assert_sensible_png(plots / "curves.png")
    assert_curves_drawn(plots / "curves.png")


@pytest.mark.slow
def test_without_validation_or_test_data_there_is_no_confusion_matrix(tmp_path):
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "run", "--set", "data.validation=null",
                  "--set", "data.test=null", "--set", "training.epochs=1", "--quiet")
    assert ran.exit_code == 0, ran
    assert [p.name for p in (tmp_path / "run" / "plots").iterdir()] == ["curves.png"]
    assert_curves_drawn(tmp_path / "run" / "plots" / "curves.png", validation=False)


@pytest.mark.slow
def test_a_plotting_failure_never_fails_the_run(tmp_path, monkeypatch):
    from mlcli.use import plots

    def broken(*args, **kwargs):
        raise RuntimeError("no fonts on this machine")

    monkeypatch.setattr(plots, "curves_png", broken)
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "run", "--set", "training.epochs=1")
    assert ran.exit_code == 0, ran
    assert "note: plots/curves.png was not written (RuntimeError: no fonts on this machine)" in ran.stderr
    assert (tmp_path / "run" / "model.keras").is_file()
    assert '"status": "completed"' in (tmp_path / "run" / "run.json").read_text()
    assert [p.name for p in (tmp_path / "run" / "plots").iterdir()] == ["confusion.png"]
    assert_confusion_drawn(tmp_path / "run" / "plots" / "confusion.png")


@pytest.mark.slow
def test_the_plotting_thread_honours_quiet(tmp_path, monkeypatch):
    """The pictures render on a thread of their own: --quiet must reach it (its note stays unsaid)."""
    from mlcli.use import plots

    def broken(*args, **kwargs):
        raise RuntimeError("no fonts on this machine")

    monkeypatch.setattr(plots, "curves_png", broken)
    ran = run_cli("train", CONFIGS / "tiny.yaml", "--output", tmp_path / "run", "--set", "training.epochs=1",
                  "--quiet")
    assert ran.exit_code == 0, ran
    assert ran.stderr == ""


def test_curves_have_one_panel_per_metric_and_survive_one_epoch_and_gaps():
    from mlcli.use.plots import curves_png, metric_names

    history = [{"epoch": 1, "loss": 0.9, "accuracy": 0.5, "auc": 0.6, "val_loss": 1.0, "val_accuracy": 0.4,
                "val_auc": float("nan"), "learning_rate": 0.01, "seconds": 0.2}]
    assert metric_names(history) == ["loss", "accuracy", "auc"]
    picture = curves_png(history, "one epoch", loss="categorical_crossentropy")
    width, height = png_size(picture)
    assert width > 2 * height  # three panels in a row
    assert_curves_drawn(picture)
    assert curves_png([], "nothing") is None


def test_confusion_counts_and_class_decisions():
    from mlcli.use.plots import predicted_classes
    from mlcli.use.scores import confusion_matrix

    assert predicted_classes(np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]]), from_logits=False).tolist() == [1, 0]
    assert predicted_classes(np.array([[0.4], [0.6]]), from_logits=False).tolist() == [0, 1]
    assert predicted_classes(np.array([[-0.2], [0.3]]), from_logits=True).tolist() == [0, 1]
    counts = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_confusion_figure_with_text_labels_and_many_classes():
    from mlcli.use.plots import confusion_figure

    small = confusion_figure(np.array([[5, 1], [0, 7]]), ["cat", "dog"], "validation split")
    assert png_size(small)[0] >= 300
    assert_confusion_drawn(small)
    many = 40  # too many to write counts in the cells: the figure grows instead
    counts = np.diag(np.arange(1, many + 1))
    width, height = png_size(confusion_figure(counts, [f"class_{i}" for i in range(many)], "test split"))
    assert width > png_size(small)[0] and height <= 2500
