"""Data, from a file to tf.data.

- sources: a data spec (path, glob, builtin:NAME) to its files; formats/: one module per file format
- columns: which columns are features, labels, --keep or unused (the one column planner)
- values: an Arrow column's values checked, as numbers (features) or as labels
- feature_types (each feature's type, declared or inferred, and missing policy: the typed path or the
  plain float one), typed_values (a typed column's values as the model takes them), fit_features
  (what typed features learn from the training split), feature_report (the feature table)
- labels: task, vocabulary, and how labels become what the loss wants
- frames (in memory), stream_source (data.stream, in chunks), inputs (evaluate/predict, in batches):
  the three readers
- prepare (in memory), stream_scan + stream (from disk), load (which of the two): a run's splits
- split: the interface both kinds of split offer; pipeline: tf.data over either
"""
