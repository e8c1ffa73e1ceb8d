"""Running the server: the address bound first, the model loaded, uvicorn serving until SIGTERM.

The socket is bound and listening before the model loads (a taken port is exit 4 at once, before
TensorFlow starts; a client that connects during the load waits in the backlog instead of being
refused). SIGTERM or Ctrl-C: uvicorn stops accepting, answers every request in flight (the batcher
runs until the last is answered), then the process exits 0.
"""

from __future__ import annotations

import errno
import signal
import socket
from pathlib import Path

from mlcli import console
from mlcli.checkpoint.checkpoint import open_checkpoint
from mlcli.errors import AddressError, UsageError
from mlcli.settings import active_settings

GRACE_SECONDS = 30  # SIGTERM: requests in flight get this long to be answered
# An idle connection is kept this long (uvicorn's default, 5 s, is shorter than the idle timeout of
# common load balancers, 60 s: a client reusing a connection the server has just closed gets a reset).
KEEP_ALIVE_SECONDS = 65


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), or exit 4 saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(f"--host {host}: not an address of this machine or a name that resolves ({exc})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart right after a stop may rebind
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise AddressError(f"--port {port}: {where} is already in use by another process",
                               hint="stop it, or choose another port (--port 0 picks a free one)") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise AddressError(f"--port {port}: this user may not listen on {where} (ports below 1024 need "
                               "privileges)", hint="choose a port from 1024 up, e.g. --port 8080") from None
        raise AddressError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})",
                           hint="--host must be an address of this machine (default 127.0.0.1)") from None
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(checkpoint: Path, *, host: str, port: int, name: str | None, max_batch: int, batch_timeout_ms: float,
          max_body: int, unsafe: bool) -> None:
    """Serve CKPT until SIGTERM or Ctrl-C; returns once every request in flight is answered."""
    ckpt = open_checkpoint(checkpoint)  # a bad CKPT is predict's exit 2, before the port and TensorFlow
    sock = bind(host, port)
    try:
        import uvicorn  # deferred: only `serve` needs the web stack

        from mlcli.serve.app import create_app  # deferred: imports FastAPI
        from mlcli.serve.model import ServedModel  # deferred: imports TensorFlow when it loads

        for note in ckpt.notes:
            console.info(note)
        model = ServedModel.load(ckpt, name, unsafe=unsafe)
        address = url(sock)
        announce = active_settings().json  # read here: ready() runs on uvicorn's event loop

        def ready() -> None:
            if announce:  # one document, as soon as the address can be used
                console.data_json({"status": "serving", "url": address, "name": model.name,
                                   "predict_url": f"{address}/v1/models/{model.name}:predict",
                                   "checkpoint": str(model.ckpt.model_path)})
            console.info(f"serving {model.name!r} ({model.ckpt.model_path}) on {address} — "
                         f"POST {address}/v1/models/{model.name}:predict; SIGTERM or Ctrl-C stops")

        app = create_app(model, max_batch=max_batch, batch_timeout_ms=batch_timeout_ms, max_body=max_body,
                         on_ready=ready)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=GRACE_SECONDS, timeout_keep_alive=KEEP_ALIVE_SECONDS,
                                server_header=False)
        server = uvicorn.Server(config)
        with _stop_signals() as stopped:
            server.run(sockets=[sock])
        console.info(f"stopped ({stopped[0] if stopped else 'server ended'}); every request in flight was answered")
    finally:
        sock.close()


class _stop_signals:
    """While uvicorn runs, SIGTERM and SIGINT are its own (stop accepting, drain). Afterwards uvicorn
    raises the signal again for whatever handler was there before: this one records it, so a stop
    asked for is a clean exit 0 rather than death by the signal."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __enter__(self) -> list[str]:
        self.received: list[str] = []
        self.previous = {sig: signal.signal(sig, self._record) for sig in self.SIGNALS}
        return self.received

    def _record(self, signum, frame) -> None:
        self.received.append(signal.Signals(signum).name)

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
