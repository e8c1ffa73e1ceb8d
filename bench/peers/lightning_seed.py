"""The seed job the way a Lightning user writes it: a LightningModule, a LightningDataModule and
LightningCLI, configured by YAML (bench/peers/lightning_seed.yaml). Runs in bench/.peers-venv
(`make bench-peers` makes it), never in mlcli's environment.

Same math as `mlcli train configs/digits.yaml` and bench/baseline_keras.py: 64-64-10 relu/relu
(softmax inside the cross-entropy, as torch does it), Adam(0.01), batch 32, 10 epochs, 20% of the
training CSV held out for validation (seeded), features standardised with the training split's
statistics, test accuracy at the end. Lightning's defaults stay on (checkpointing, its logger, the
model summary); only the progress bar is off, as mlcli draws none when stderr is not a terminal.

    python bench/peers/lightning_seed.py --config bench/peers/lightning_seed.yaml [--data.train CSV ...]

`LightningCLI(run=False)` then `fit` and `test`: the documented way to do both in one process. The
only addition to a plain script is a callback reading the clock at each training epoch's start and end
(measurement only). Prints one JSON line.
"""

from __future__ import annotations

import gzip
import json
import time

STARTED = time.perf_counter()

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.cli import LightningCLI  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset, random_split  # noqa: E402


def read_csv(path: str, label: str) -> tuple[np.ndarray, np.ndarray]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as handle:
        header = [name.strip('"') for name in handle.readline().strip().split(",")]
        data = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    column = header.index(label)
    return np.delete(data, column, axis=1), data[:, column].astype(np.int64)


class CsvData(L.LightningDataModule):
    def __init__(self, train: str, test: str, label: str = "label", validation: float = 0.2,
                 batch_size: int = 32, seed: int = 42):
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str) -> None:
        if hasattr(self, "test_set"):
            return
        hp = self.hparams
        x, y = read_csv(hp.train, hp.label)
        x_test, y_test = read_csv(hp.test, hp.label)
        everything = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        held_out = int(len(everything) * hp.validation)
        self.train_set, self.val_set = random_split(everything, [len(everything) - held_out, held_out],
                                                    generator=torch.Generator().manual_seed(hp.seed))
        train_x = torch.from_numpy(x)[self.train_set.indices]
        self.mean, self.std = train_x.mean(0), train_x.std(0).clamp_min(1e-7)
        self.test_set = TensorDataset(torch.from_numpy(x_test), torch.from_numpy(y_test))
        self.features, self.classes = x.shape[1], int(y.max()) + 1

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size) if len(self.val_set) else []

    def test_dataloader(self):
        return DataLoader(self.test_set, batch_size=self.hparams.batch_size)


class Mlp(L.LightningModule):
    def __init__(self, features: int = 64, hidden: list[int] = [64, 64], classes: int = 10,  # noqa: B006
                 learning_rate: float = 0.01):
        super().__init__()
        self.save_hyperparameters()
        layers: list[nn.Module] = []
        width = features
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        self.net = nn.Sequential(*layers, nn.Linear(width, classes))
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))

    def on_fit_start(self) -> None:  # the datamodule's training statistics, kept inside the model
        self.mean.copy_(self.trainer.datamodule.mean)
        self.std.copy_(self.trainer.datamodule.std)

    def forward(self, x):
        return self.net((x - self.mean) / self.std)

    def _step(self, batch, name: str):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.log(f"{name}loss", loss, on_step=False, on_epoch=True)
        self.log(f"{name}accuracy", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val_")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test_")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)


class EpochClock(L.Callback):  # measurement only
    def __init__(self):
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, module):
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        self.seconds.append(time.perf_counter() - self.started)


def main() -> None:
    clock = EpochClock()
    cli = LightningCLI(Mlp, CsvData, run=False, seed_everything_default=42,
                       trainer_defaults={"callbacks": [clock], "enable_progress_bar": False},
                       save_config_kwargs={"overwrite": True})
    fit_started = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fit_seconds = time.perf_counter() - fit_started
    metrics = dict(cli.trainer.callback_metrics)
    tested = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    print(json.dumps({"test_accuracy": float(tested["test_accuracy"]), "accuracy": float(metrics["accuracy"]),
                      "train_rows": len(cli.datamodule.train_set), "epoch_seconds": clock.seconds,
                      "fit_seconds": fit_seconds, "torch": torch.__version__, "lightning": L.__version__,
                      "threads": torch.get_num_threads(), "seconds": time.perf_counter() - STARTED}))


if __name__ == "__main__":
    main()
