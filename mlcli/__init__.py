"""mlcli: train, evaluate, fine-tune and serve Keras models described entirely in YAML."""

import os

__version__ = "0.1.0"

# Arrow's allocator, chosen before anything imports pyarrow (it reads this once). Its default,
# mimalloc, asks the kernel for fresh (huge) pages for every large table and hands them back soon
# after: reading a 95 MB CSV in a new process took 1.68-2.29 s, 1.1-2.0 s of it in the kernel, against
# 0.70-1.17 s with the system allocator (docs/performance.md, "Arrow's allocator: the system one"). A user's own setting wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
