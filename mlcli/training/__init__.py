"""Training a model into a run directory: the session (start, continue or report), fit, callbacks, distribution."""
