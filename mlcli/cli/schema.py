"""`mlcli schema`: the config's JSON Schema, for editors. No TensorFlow."""

from __future__ import annotations

from mlcli import console
from mlcli.cli.options import json_option
from mlcli.settings import Settings, use_settings


def schema(
    json_: bool = json_option(help="Accepted for symmetry: the output is always one JSON document."),
) -> None:
    """Print the config's JSON Schema, for editors (see README: Editor support)."""
    # deferred: the schema is built from the pydantic config models, too slow to load for `mlcli --help`
    from mlcli.config.reference import editor_schema

    use_settings(Settings(json=json_))
    console.data_json(editor_schema())
