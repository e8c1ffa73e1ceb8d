"""Building the Keras model from the config: layers, optimizer, loss, metrics; heads and selectors; finetune."""
