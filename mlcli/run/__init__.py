"""The run directory: file names and atomic writes, run.json (the manifest), resume state, the lock."""
