"""Reading overlapped with computing: batches produced, or results consumed, on a background thread.

`predict` reads and converts the next batch while this one is predicted, and writes the last one
while the next is read: on a 2-core machine, both cores work (pyarrow and numpy release the GIL).
"""

from __future__ import annotations

import contextlib
import queue
import threading


def prefetch(items, depth: int = 2):
    """`items`, produced by a background thread up to `depth` ahead of the consumer.

    Arrow's streaming CSV reader parses on one core; with the next batch read and converted in a
    thread (pyarrow and numpy release the GIL) while this one is predicted and written, a 2-core
    machine does both at once. Memory stays bounded: at most `depth` batches wait. An error in the
    producer is raised in the consumer, at the batch where it happened.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as exc:  # noqa: BLE001 — handed to the consumer, raised there
            put((None, exc))

    thread = threading.Thread(target=produce, name="mlcli-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def in_background(consume, depth: int = 2):
    """A `submit(item)` that hands items to `consume` on a background thread, in order.

    At most `depth` items wait (memory stays bounded). An error in `consume` is raised by the next
    submit or on leaving the block; leaving the block waits until every item is consumed.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    end = object()
    failed: list[BaseException] = []

    def work() -> None:
        while True:
            item = slots.get()
            if item is end:
                return
            if not failed:
                try:
                    consume(item)
                except BaseException as exc:  # noqa: BLE001 — raised in the submitting thread
                    failed.append(exc)

    def submit(item) -> None:
        if failed:
            raise failed[0]
        slots.put(item)

    thread = threading.Thread(target=work, name="mlcli-writer", daemon=True)
    thread.start()
    try:
        yield submit
    finally:
        slots.put(end)
        thread.join()
    if failed:
        raise failed[0]
