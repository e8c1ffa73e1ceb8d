"""The naive server `bench/serve_load.py` compares `mlcli serve` with: FastAPI calling model.predict
once per request — what a first Keras-on-FastAPI service looks like. Same request and answer shape
(TensorFlow Serving's {"instances": [...]} -> {"predictions": [...]}), the run's model.keras loaded
with plain Keras, features in the run's order (its run.json), classes from labels.json.

    python bench/serve_naive.py RUN_DIR [--port 0]

Listens on 127.0.0.1 only; prints `serving on http://127.0.0.1:PORT` on stderr when ready.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    import keras
    import numpy as np
    import uvicorn
    from fastapi import FastAPI

    model = keras.saving.load_model(args.run / "model.keras", compile=False)
    features = [f["name"] if isinstance(f, dict) else f for f in json.loads((args.run / "run.json").read_text())["features"]]
    classes = json.loads((args.run / "labels.json").read_text())
    app = FastAPI()

    @app.post("/v1/models/{name}:predict")
    def predict(name: str, body: dict):  # a plain `def`: FastAPI runs it in its thread pool
        x = np.array([[row[f] for f in features] for row in body["instances"]], dtype=np.float32)
        probabilities = model.predict(x, verbose=0)
        return {"predictions": [{"prediction": classes[int(np.argmax(p))],
                                 **{f"prob_{c}": float(v) for c, v in zip(classes, p)}} for p in probabilities]}

    sock = socket.socket()
    sock.bind(("127.0.0.1", args.port))
    sock.listen(2048)
    print(f"serving on http://127.0.0.1:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


if __name__ == "__main__":
    main()
