"""The HTTP routes (FastAPI), in TensorFlow Serving's REST shape (docs/contract.md §9).

    POST /v1/models/NAME:predict    {"instances": [...]} or {"inputs": {...}} -> {"predictions": [...]}
    GET  /v1/models/NAME            status (model_version_status)
    GET  /v1/models/NAME/metadata   features with types, classes, config hash, versions
    GET  /healthz                   {"status": "ok"}
    GET  /metrics                   Prometheus text

Every error is JSON {"error": "..."}: 400 a bad request (naming the column or row, as `mlcli predict`
would), 404 an unknown model or path, 405 a wrong method, 413 a body over --max-body, 500 a bug
(the server goes on answering).
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' annotations (Request), which
# are imported inside create_app, so they must be evaluated where the routes are defined.
import contextlib
import time

from mlcli.serve.batcher import Batcher
from mlcli.serve.metrics import Metrics
from mlcli.serve.model import ServedModel
from mlcli.serve.requests import MAX_BODY, BadRequest, parse_body

DEFAULT_MAX_BATCH = 64  # rows per model call: the seed network computes 64 rows in about the time of one
MAX_ERROR = 2000  # characters of an error message (one quoting a megabyte value is cut)
DEFAULT_BATCH_TIMEOUT_MS = 2.0  # how long a request waits for others; a few ms against ~1 ms of HTTP per request


def create_app(model: ServedModel, *, max_batch: int = DEFAULT_MAX_BATCH,
               batch_timeout_ms: float = DEFAULT_BATCH_TIMEOUT_MS, max_body: int = MAX_BODY,
               on_ready=None):
    """The FastAPI app serving `model`; `on_ready()` is called once it takes requests (the startup line)."""
    from fastapi import FastAPI, Request  # deferred: only `serve` needs the web stack
    from fastapi.exceptions import RequestValidationError  # deferred: only `serve` needs the web stack
    from fastapi.responses import JSONResponse, Response  # deferred: only `serve` needs the web stack
    from starlette.exceptions import HTTPException  # deferred: only `serve` needs the web stack

    metrics = Metrics()
    batcher = Batcher(model.answer, max_batch, batch_timeout_ms / 1000, metrics.batch)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        await batcher.start()
        if on_ready is not None:
            on_ready()
        yield
        await batcher.stop()

    app = FastAPI(title="mlcli serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.model, app.state.metrics, app.state.batcher = model, metrics, batcher

    def answer(endpoint: str, started: float, content, status: int = 200):
        metrics.answered(endpoint, status, time.perf_counter() - started)
        if status >= 400 and len(content["error"]) > MAX_ERROR:  # a huge value quoted in a message
            content = {"error": content["error"][:MAX_ERROR] + " …"}
        return JSONResponse(content, status_code=status)

    def check_name(name: str) -> None:
        if name == f"{model.name}:predict":
            raise BadRequest(f"GET is not allowed on /v1/models/{name} — predict is POST", status=405)
        if name != model.name:
            raise BadRequest(f"unknown model {name!r} — this server serves {model.name!r} "
                             f"(POST /v1/models/{model.name}:predict)", status=404)

    @app.post("/v1/models/{name}:predict")
    async def predict(name: str, request: Request):
        metrics.in_flight.inc()
        try:
            return await _predict(name, request)
        finally:
            metrics.in_flight.dec()

    async def _predict(name: str, request: Request):
        started = time.perf_counter()
        try:
            check_name(name)
            body = await _read_body(request, max_body)
            shape, table = parse_body(body)
            model.check(table, shape)
            predictions = await batcher.submit((table, shape), table.num_rows)
        except BadRequest as exc:
            return answer("predict", started, {"error": exc.message}, exc.status)
        except Exception as exc:  # noqa: BLE001 — a bug answers 500 (JSON, counted) and the server goes on
            return answer("predict", started, {"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)
        return answer("predict", started, {"predictions": predictions})

    def about(route: str, name: str, facts):
        """A GET about the model: its facts, or 404/405 naming the problem."""
        started = time.perf_counter()
        try:
            check_name(name)
        except BadRequest as exc:
            return answer(route, started, {"error": exc.message}, exc.status)
        return answer(route, started, facts())

    @app.get("/v1/models/{name}")
    async def status(name: str):
        return about("status", name, model.status)

    @app.get("/v1/models/{name}/metadata")
    async def metadata(name: str):
        return about("metadata", name, model.metadata)

    @app.get("/healthz")
    async def healthz():
        return answer("healthz", time.perf_counter(), {"status": "ok", "model": model.name})

    @app.get("/metrics")
    async def prometheus():
        body, content_type = metrics.text()
        return Response(body, media_type=content_type)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        text = {404: f"no such path {request.url.path} — see GET /v1/models/{model.name}/metadata",
                405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        metrics.answered("other", exc.status_code, 0.0)
        return JSONResponse({"error": text}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        metrics.answered("other", 400, 0.0)
        return JSONResponse({"error": f"bad request: {exc.errors()[:1]}"}, status_code=400)

    return app


async def _read_body(request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is over `limit` bytes — never read whole first."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(_too_large(int(declared), limit), status=413)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise BadRequest(_too_large(None, limit), status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int | None, limit: int) -> str:
    given = f"{size:,} bytes" if size is not None else f"over {limit:,} bytes"
    return f"the body is {given} — the limit is {limit:,} bytes (mlcli serve --max-body); send fewer rows per request"
