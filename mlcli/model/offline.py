"""Downloads that cannot happen fail within seconds, saying what to do (docs/contract.md §7, exit 4).

Keras fetches pretrained weights with keras.utils.get_file into its cache (KERAS_HOME or ~/.keras,
then models/); offline, that call would hang on DNS and TCP timeouts and end in a traceback. While
a backbone is built, `download_guard` stands in front of Keras's own get_file: a file already in the
cache goes straight to Keras; otherwise a connection to the URL's host is tried for a few seconds
first, and when that fails the build stops with exit 4 naming the URL and how to give a local file.
On a connected machine Keras then downloads exactly as it always does.

MLCLI_NETWORK_PROBE=host:port points the check at another address (tests: a closed local port, so
nothing is ever downloaded); MLCLI_NETWORK_TIMEOUT sets its seconds (default 3).
"""

from __future__ import annotations

import contextlib
import os
import socket
from urllib.parse import urlparse

from mlcli.errors import MlcliError

PROBE_ENV = "MLCLI_NETWORK_PROBE"
TIMEOUT_ENV = "MLCLI_NETWORK_TIMEOUT"


class OfflineError(MlcliError):
    """Something had to be downloaded and the network is not there (exit 4: the environment lacks it)."""

    exit_code = 4
    kind = "offline"


def reachable(url: str) -> tuple[bool, str]:
    """(whether a TCP connection to the URL's host opens within the timeout, the address tried)."""
    override = os.environ.get(PROBE_ENV)
    if override:
        host, _, port = override.rpartition(":")
        address = (host or "127.0.0.1", int(port))
    else:
        parsed = urlparse(url)
        address = (parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80))
    timeout = float(os.environ.get(TIMEOUT_ENV) or 3)
    try:
        with socket.create_connection(address, timeout=timeout):
            return True, f"{address[0]}:{address[1]}"
    except OSError:
        return False, f"{address[0]}:{address[1]}"


def _cache_dir(cache_dir: str | None, cache_subdir: str) -> str:
    """Where keras.utils.get_file keeps a file (its own rule: KERAS_HOME, else ~/.keras, else /tmp/.keras)."""
    if cache_dir is None:
        cache_dir = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
        if not os.access(cache_dir if os.path.exists(cache_dir) else os.path.dirname(cache_dir), os.W_OK):
            cache_dir = os.path.join("/tmp", ".keras")
    return os.path.join(os.path.expanduser(cache_dir), cache_subdir)


@contextlib.contextmanager
def download_guard(what: str, hint: str = "give a local weights file (weights: path/to/file.weights.h5) or "
                                          "weights: null for random initial weights"):
    """Within the block, Keras's get_file fails fast (OfflineError) for a file it would have to
    download from a host that cannot be reached."""
    from keras.src.utils import file_utils  # deferred: imports TensorFlow

    original = file_utils.get_file

    def guarded(fname=None, origin=None, *args, **kwargs):
        cache_subdir = kwargs.get("cache_subdir", "datasets")
        name = fname or os.path.basename(urlparse(origin or "").path)
        cached = os.path.join(_cache_dir(kwargs.get("cache_dir"), cache_subdir), name)
        if origin and not os.path.exists(cached):
            ok, address = reachable(origin)
            if not ok:
                raise OfflineError(
                    f"{what}: {origin} cannot be downloaded — no connection to {address} (offline?)",
                    hint=f"{hint}; or download it on a connected machine and put it at {cached}",
                )
        return original(fname, origin, *args, **kwargs)

    file_utils.get_file = guarded
    try:
        yield
    finally:
        file_utils.get_file = original
