"""mlcli: train, evaluate, fine-tune and serve Keras models described entirely in YAML."""

import os

__version__ = "0.1.0"

# Arrow's allocator, chosen before anything imports pyarrow (it reads this once). With its default,
# mimalloc, reading a 95 MB CSV in a new process took 1.681-2.291 s, 1.133-1.97 s of it in the kernel;
# with the system allocator 0.703-1.171 s (docs/performance.md, "Arrow's allocator: the system one").
# A user's own setting wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
