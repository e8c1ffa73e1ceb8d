"""`mlcli schema`: the config's JSON Schema, for editors. No TensorFlow."""

from __future__ import annotations

from mlcli import console


def schema() -> None:
    """Print the config's JSON Schema, for editors (see README: Editor support)."""
    # deferred: the schema is built from the pydantic config models, too slow to load for `mlcli --help`
    from mlcli.config.reference import editor_schema

    console.data_json(editor_schema())
