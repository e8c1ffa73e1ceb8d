"""`mlcli serve`: a checkpoint behind an HTTP endpoint in TensorFlow Serving's REST shape (docs/contract.md §9).

`requests` reads a request body into a table of rows; `model` holds the loaded checkpoint and turns
rows into predictions through mlcli.use.predict.Predictor (the one path `mlcli predict` takes);
`batcher` merges concurrent requests into one forward pass; `metrics` counts for /metrics; `app`
is the FastAPI routes; `server` binds the port, runs uvicorn and handles SIGTERM.
"""
