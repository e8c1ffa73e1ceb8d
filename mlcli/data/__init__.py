"""Data: sources (csv, parquet, npz, builtin), splits, label encoding, tf.data pipelines."""
