"""--progress-every SECONDS: a plain line on stderr at least that often while long work runs.

For logs that are not a terminal (CI), where the live bar is not drawn and a long epoch (or a long
prediction) would otherwise say nothing until it ends. A thread writes the line, so it comes on time
even while one long TensorFlow call runs; any other progress line the work prints restarts the wait.
"""

from __future__ import annotations

import contextvars
import threading
import time
from typing import Callable

from mlcli import console


class Heartbeat:
    """`with Heartbeat(every, describe):` prints `describe()` whenever `every` seconds pass without a
    progress line; nothing on a terminal, with --quiet, or when `every` is None."""

    def __init__(self, every: float | None, describe: Callable[[], str]):
        self.every = every
        self.describe = describe
        self.last = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.every is None or self._thread is not None or console.is_terminal() or console.quiet():
            return
        self.last = time.monotonic()
        self._stop.clear()
        # The thread prints with this command's settings (they live in context variables).
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._beat,),
                                        name="mlcli-progress", daemon=True)
        self._thread.start()

    def printed(self) -> None:
        """The work printed a progress line of its own: the next beat is `every` seconds from now."""
        self.last = time.monotonic()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def __enter__(self) -> "Heartbeat":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _beat(self) -> None:
        while not self._stop.wait(max(0.01, self.last + self.every - time.monotonic())):
            if time.monotonic() - self.last >= self.every:
                console.info(self.describe())
                self.last = time.monotonic()
