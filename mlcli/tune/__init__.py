"""Sweeps (`mlcli tune`) and cross-validation (`mlcli train --folds`), on top of training/ and run/."""
