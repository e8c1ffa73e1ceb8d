from mlcli.cli import app

app(prog_name="mlcli")
