"""mlcli: train, evaluate, fine-tune and serve Keras models described entirely in YAML."""

__version__ = "0.1.0"
