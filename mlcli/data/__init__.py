"""Data, from a file to tf.data.

- sources: a data spec (path, glob, builtin:NAME) to its files; formats/: one module per file format
- columns: which columns are features, labels, --keep or unused (the one column planner)
- values: an Arrow column's values checked, as numbers (features) or as labels
- labels: task, vocabulary, and how labels become what the loss wants
- frames (in memory), stream_source (data.stream, in chunks), inputs (evaluate/predict, in batches):
  the three readers
- prepare (in memory), stream_scan + stream (from disk), load (which of the two): a run's splits
- split: the interface both kinds of split offer; pipeline: tf.data over either
"""
