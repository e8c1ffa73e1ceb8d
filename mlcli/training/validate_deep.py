"""`mlcli validate --deep`: resolve every Keras name and build the model on the data's shape."""

from __future__ import annotations

from mlcli import runtime
from mlcli.config import LoadedConfig
from mlcli.data.feature_report import show_features
from mlcli.data.formats.csv import Dialect, use_dialect
from mlcli.data.labels import label_encoding
from mlcli.data.load import prepare_data
from mlcli.model.build import build_model
from mlcli.model.compile import build_loss, build_metrics, build_optimizer
from mlcli.model.heads import apply_head, check_output_width
from mlcli.model.memory import check_fits_in_memory, training_memory
from mlcli.model.table import cost_summary, parameter_counts, show_costs
from mlcli.training.class_weights import class_weights


def validate_deep(loaded: LoadedConfig) -> str:
    """Everything train checks before its first step, without writing anything. Returns a summary."""
    runtime.import_tensorflow()

    build_optimizer(loaded)
    build_loss(loaded)
    build_metrics(loaded)
    # The same data path as train: streamed data (data.stream) is scanned chunk by chunk, never loaded.
    with use_dialect(Dialect.of(loaded.config.data)):
        prepared = prepare_data(loaded.config)
    if prepared.features is not None:
        show_features(prepared.features)
    note = ""
    head = loaded.config.finetune.head
    check_fits_in_memory(loaded, prepared.input_shape, finetune=head is not None)
    if head is not None:  # a finetune config: check the model it describes, with the new head on
        layers = apply_head(loaded.config.model.layers, head.replace, head.layers)
        model_section = loaded.config.model.model_copy(update={"layers": layers})
        loaded = LoadedConfig(loaded.config.model_copy(update={"model": model_section}), loaded.positions, loaded.source)
        note = (f"; finetune.head applied: the last {head.replace} of model.layers replaced by {len(head.layers)} "
                "(with --from, mlcli finetune uses the parent's own layers)")
    model = build_model(loaded, prepared.input_shape, prepared.train.normalization_input,
                        feature_names=prepared.feature_names, features=prepared.features)
    outputs = int(model.output_shape[-1])
    encoding = label_encoding(loaded.config, prepared.task, outputs, len(prepared.classes or []))
    check_output_width(loaded, prepared, encoding, outputs)
    class_weights(loaded, prepared)
    counts = parameter_counts(model)
    memory = training_memory(loaded, prepared.input_shape, finetune=head is not None)
    show_costs(cost_summary(model, prepared.train.rows, memory.needed if memory is not None else None))
    splits = ", ".join(f"{s.name} {s.rows}" for s in (prepared.train, prepared.validation, prepared.test) if s)
    kind = f"{len(prepared.classes)} classes" if prepared.classes else f"{len(prepared.label_names)} target(s)"
    how = " (streamed from disk)" if prepared.train.streamed else ""
    inputs = (f"{len(prepared.features)} typed feature column(s)" if prepared.features is not None
              else f"input shape {prepared.input_shape}")
    notes = "".join(f"; {n}" for n in prepared.notes)
    return (f"deep check passed: {prepared.task} with {kind}; rows{how}: {splits}{notes}; {inputs}; "
            f"{counts['trainable']:,} trainable parameters; labels encoded {encoding}{note}")
