"""The command line. `mlcli.cli:app` is the entry point; importing it registers every command.

A command is one module here with one function; registering it is one line below. The order of the
lines is the order `mlcli --help` lists the commands.
"""

from mlcli.cli import doctor, evaluate, export, finetune, init, predict, schema, train, validate
from mlcli.cli.app import app, main

app.command()(validate.validate)
app.command()(doctor.doctor)
app.command()(train.train)
app.command()(evaluate.evaluate)
app.command()(predict.predict)
app.command()(export.export)
app.command()(finetune.finetune)
app.command()(schema.schema)
app.command()(init.init)

__all__ = ["app", "main"]
