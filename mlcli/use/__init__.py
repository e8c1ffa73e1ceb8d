"""Using a trained model: the forward pass, evaluate, predict, export, plots."""
