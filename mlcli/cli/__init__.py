"""The command line. `mlcli.cli:app` is the entry point; importing it registers every command.

A command is one module here with one function; registering it is one line below. The order of the
lines is the order `mlcli --help` lists the commands.
"""

from mlcli.cli import doctor, evaluate, explain, export, finetune, init, predict, schema, serve, train, tune, validate
from mlcli.cli.app import Command, app, main

app.command(cls=Command)(validate.validate)
app.command(cls=Command)(doctor.doctor)
app.command(cls=Command)(train.train)
app.command(cls=Command)(evaluate.evaluate)
app.command(cls=Command)(predict.predict)
app.command(cls=Command)(export.export)
app.command(cls=Command)(explain.explain)
app.command(cls=Command)(serve.serve)
app.command(cls=Command)(finetune.finetune)
app.command(cls=Command)(tune.tune)
app.command(cls=Command)(schema.schema)
app.command(cls=Command)(init.init)

__all__ = ["app", "main"]
