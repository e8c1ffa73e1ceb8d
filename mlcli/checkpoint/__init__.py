"""A trained model named on the command line: its .keras archive, read without TensorFlow, and its run."""
