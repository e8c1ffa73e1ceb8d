"""The served model: a checkpoint loaded once, rows checked and predicted through mlcli.use.predict's
Predictor — the same reader, forward pass and formatting as `mlcli predict` (docs/contract.md §9).

A request's rows are read and checked on their own (a bad row is that request's 400, never its
neighbours'); the forward pass is then shared by every request of a batch (`outputs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlcli.checkpoint.checkpoint import Checkpoint
from mlcli.data.columns import listing
from mlcli.data.typed_values import concat_rows, row_count
from mlcli.errors import MlcliError
from mlcli.serve.requests import BadRequest
from mlcli.use.predict import Predictor, json_rows

VERSION = "1"  # TensorFlow Serving's model version: one checkpoint is served, as version 1


def default_name(ckpt: Checkpoint) -> str:
    """The run's name (config `name`), else the .keras file's stem."""
    if ckpt.loaded is not None and ckpt.loaded.config.name:
        return str(ckpt.loaded.config.name)
    return Path(ckpt.model_path).stem


@dataclass
class ServedModel:
    name: str
    predictor: Predictor

    @classmethod
    def load(cls, ckpt: Checkpoint, name: str | None, *, unsafe: bool) -> ServedModel:
        from mlcli.checkpoint.load import load_model  # deferred: imports TensorFlow

        model, ckpt = load_model(ckpt, unsafe=unsafe)
        return cls(name or default_name(ckpt), Predictor.of(model, ckpt, None, "jsonl"))

    @property
    def ckpt(self) -> Checkpoint:
        return self.predictor.ckpt

    def rows(self, table, shape: str):
        """A request's table (mlcli.serve.requests) read and checked as `mlcli predict` reads a file:
        one Batch, or a BadRequest with the reader's message (column and row named)."""
        try:
            reader = self.predictor.reader(shape, "request", table=table)
            if reader.extra:
                names = self.ckpt.features
                raise BadRequest(f"request: {shape}: unknown column(s) {', '.join(map(repr, reader.extra[:10]))}"
                                 + (f" — the model takes {listing(names)}" if names else ""))
            batches = list(reader.batches())
        except MlcliError as exc:
            raise BadRequest(exc.message + (f" ({exc.hint})" if exc.hint else "")) from None
        if len(batches) == 1:
            return batches[0]
        first = batches[0]
        first.x = concat_rows([b.x for b in batches])
        first.rows = row_count(first.x)
        return first

    def outputs(self, xs: list) -> list[np.ndarray]:
        """The model's outputs for several requests' rows, in one forward pass (the batcher's call)."""
        out = self.predictor.inference.outputs(concat_rows(xs) if len(xs) > 1 else xs[0])
        bounds = np.cumsum([row_count(x) for x in xs])[:-1]
        return np.split(out, bounds)

    def predictions(self, batch, outputs: np.ndarray) -> list[dict]:
        """The rows of `mlcli predict --output x.jsonl` for this batch: prediction, prob_<label>..."""
        return json_rows(self.predictor.table(batch, outputs))

    def status(self, state: str = "AVAILABLE") -> dict:
        """GET /v1/models/NAME, as TensorFlow Serving answers it."""
        return {"model_version_status": [{"version": VERSION, "state": state,
                                          "status": {"error_code": "OK", "error_message": ""}}]}

    def metadata(self) -> dict:
        """GET /v1/models/NAME/metadata: what a client needs to build a request."""
        ckpt = self.ckpt
        if ckpt.typed is not None:
            features = [{"name": r["name"], "type": r["type"]} for r in ckpt.typed]
        elif ckpt.features is not None:
            features = [{"name": name, "type": "numeric"} for name in ckpt.features]
        else:
            features = None  # a standalone .keras file without names: columns by position
        manifest = ckpt.manifest
        return {
            "model_spec": {"name": self.name, "version": VERSION},
            "metadata": {
                "checkpoint": str(ckpt.model_path),
                "run_dir": str(ckpt.run_dir) if ckpt.run_dir else None,
                "task": ckpt.task,
                "features": features,
                "input_shape": list(ckpt.input_shape) if ckpt.input_shape else None,
                "labels": list(ckpt.labels),
                "classes": ckpt.classes,
                "outputs": self.predictor.names,
                "config_hash": manifest.get("config_hash"),
                "versions": manifest.get("versions"),
            },
        }
