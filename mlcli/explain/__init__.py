"""`mlcli explain`: which inputs drive a model's predictions, and what its layers are doing (docs/contract.md §10)."""
