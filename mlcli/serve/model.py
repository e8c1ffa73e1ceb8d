"""The served model: a checkpoint loaded once, rows checked and predicted through mlcli.use.predict's
Predictor — the same reader, forward pass and formatting as `mlcli predict` (docs/contract.md §9).

The requests of a batch are read, computed and formatted together (`answer`, in the batcher's model
thread), so what each step costs per call is paid once per batch, not per request; a bad row is
still that request's 400 alone, never its neighbours'.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlcli.checkpoint.checkpoint import Checkpoint
from mlcli.data.columns import listing
from mlcli.data.typed_values import concat_rows, row_count
from mlcli.errors import MlcliError
from mlcli.serve import images
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

    @property
    def takes_bytes(self) -> bool:
        """Whether the model reads files' bytes: an image model (docs/contract.md §7), whose requests'
        images are decoded as `mlcli predict` decodes image files (mlcli.serve.images)."""
        return self.ckpt.takes_images

    def check(self, table, shape: str) -> None:
        """What is cheap to refuse before a request joins a batch: files' bytes for a model that takes none;
        for an image model, anything but images, and an image whose header is not one or declares too
        many pixels (mlcli.data.image_header, as for a file)."""
        import pyarrow as pa  # deferred: imports pyarrow

        if self.takes_bytes:
            images.check(table, shape)
            return
        binary = {pa.binary().id, pa.large_binary().id}
        given_bytes = [name for name, kind in zip(table.column_names, table.schema.types) if kind.id in binary]
        if given_bytes:
            raise BadRequest(f"request: {shape}: column {given_bytes[0]!r} holds {{\"b64\": ...}} bytes — this model "
                             "takes numbers and text, not files")

    def answer(self, requests: list[tuple[object, str]]) -> list:
        """Predictions for several requests' tables (table, shape) — the batcher's one call, in the model
        thread: each request's list of prediction rows, or the BadRequest that request gets.

        The tables are read as one (one pass of the reader, one forward pass, one formatting: what
        each costs per call is shared by the batch). When that fails, one request at least is bad:
        each is then read on its own, so it gets its own message with its own rows, and the others
        their predictions, from one forward pass still."""
        import pyarrow as pa  # deferred: imports pyarrow

        counts = [table.num_rows for table, _ in requests]
        try:
            merged = (requests[0][0] if len(requests) == 1
                      else pa.concat_tables([table for table, _ in requests], promote_options="permissive"))
            batches = [self.rows(merged, requests[0][1])]
        except (BadRequest, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            if len(requests) == 1:
                return [exc if isinstance(exc, BadRequest) else BadRequest(str(exc))]
            batches = []
            for table, shape in requests:
                try:
                    batches.append(self.rows(table, shape))
                except BadRequest as bad:
                    batches.append(bad)
            counts = [b.rows for b in batches if not isinstance(b, BadRequest)]
        good = [b for b in batches if not isinstance(b, BadRequest)]
        if not good:
            return batches
        x = concat_rows([b.x for b in good]) if len(good) > 1 else good[0].x
        outputs = self.predictor.inference.outputs(x)
        if len(good) > 1:  # format each request's rows: kept columns (none here) stay per batch
            rows = [r for b, out in zip(good, np.split(outputs, np.cumsum([b.rows for b in good])[:-1]))
                    for r in json_rows(self.predictor.table(b, out))]
        else:
            rows = json_rows(self.predictor.table(good[0], outputs))
        answers, start = [], 0
        if len(batches) == 1:  # read as one: split the rows by request
            for count in counts:
                answers.append(rows[start:start + count])
                start += count
            return answers
        for b in batches:
            if isinstance(b, BadRequest):
                answers.append(b)
            else:
                answers.append(rows[start:start + b.rows])
                start += b.rows
        return answers

    def rows(self, table, shape: str):
        """A table of rows read and checked as `mlcli predict` reads a file: one Batch, or a BadRequest
        with the reader's message (column and row named). An image model's rows are its images, decoded."""
        if self.takes_bytes:
            return images.decoded(table, shape, self.ckpt.inputs)
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
                "inputs": images.metadata(ckpt.inputs) if self.takes_bytes else None,
                "outputs": self.predictor.names,
                "config_hash": manifest.get("config_hash"),
                "versions": manifest.get("versions"),
            },
        }
