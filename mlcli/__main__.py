from mlcli.cli import main

main()
