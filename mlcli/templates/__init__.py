"""Starter configs that `mlcli init` writes (package data: each validates and trains as written)."""
