"""The run directory: file names and atomic writes, run.json (the manifest), history.csv, resume state,
the lock, and choosing the output directory."""
