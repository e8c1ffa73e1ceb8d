"""An image model's requests (docs/contract.md §9): each row is one image file's bytes, {"b64": "..."},
in the column "image" — decoded exactly as `mlcli predict` decodes image files (mlcli.data.image_decode:
the checkpoint's size, channels and crop_to_aspect_ratio), after the same header check
(mlcli.data.image_header: not an image, or more pixels than the limit, is refused before decoding).

A bad image is that request's 400 naming it: "instances: instance 2" or "inputs: column 'image', value 2".
The predictions have no path column (a request has no files): they are in the order of the images.
"""

from __future__ import annotations

from mlcli.data.image_header import header_of_bytes
from mlcli.data.image_inputs import ImageBatch, decoder_for
from mlcli.errors import MlcliError
from mlcli.serve.requests import IMAGE_COLUMN, BadRequest

_DECODERS: dict = {}  # one decoder per checkpoint's image settings: built once, not per request


def check(table, shape: str) -> None:
    """Only the image column, every value bytes, every header an image within the pixel limit."""
    import pyarrow as pa  # deferred: imports pyarrow

    other = [name for name in table.column_names if name != IMAGE_COLUMN]
    expected = (f'this model takes images: send {{"instances": [{{"b64": "<base64 PNG/JPEG>"}}, ...]}} or '
                f'{{"inputs": {{"{IMAGE_COLUMN}": [{{"b64": "..."}}, ...]}}}}')
    if other or IMAGE_COLUMN not in table.column_names:
        named = f"column {other[0]!r}" if other else f"no column {IMAGE_COLUMN!r}"
        raise BadRequest(f"request: {shape}: {named} — {expected}")
    column = table.column(IMAGE_COLUMN)
    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type) or pa.types.is_null(column.type)):
        bad = next(i for i, v in enumerate(column.to_pylist()) if v is not None)
        raise BadRequest(f"{name(shape, bad)}: {column[bad].as_py()!r:.60} is not an image's bytes — {expected}")
    for i, data in enumerate(column.to_pylist()):
        if data is None:
            raise BadRequest(f"{name(shape, i)}: missing (null) — {expected}")
        try:
            header_of_bytes(data, name(shape, i))
        except MlcliError as exc:
            raise BadRequest(exc.message + (f" ({exc.hint})" if exc.hint else "")) from None


def decoded(table, shape: str, inputs: dict) -> ImageBatch:
    """The images of a table (one request's, or several merged) as one batch of model input."""
    from mlcli.data.image_decode import decode_all  # deferred: imports TensorFlow

    values = table.column(IMAGE_COLUMN).to_pylist()
    key = (tuple(inputs["size"]), int(inputs["channels"]), bool(inputs.get("crop_to_aspect_ratio")))
    if key not in _DECODERS:
        _DECODERS[key] = decoder_for(inputs, from_bytes=True)
    try:
        x = decode_all(values, _DECODERS[key], "request", names=[name(shape, i) for i in range(len(values))])
    except MlcliError as exc:
        raise BadRequest(exc.message.removeprefix("request: ")) from None
    return ImageBatch(x, len(values), [])


def name(shape: str, index: int) -> str:
    return f"instances: instance {index + 1}" if shape == "instances" else f"inputs: column {IMAGE_COLUMN!r}, value {index + 1}"


def metadata(inputs: dict) -> dict:
    """What a client needs to send images: the column, the encoding, and what the server decodes them to."""
    return {"kind": "image", "column": IMAGE_COLUMN, "encoding": "b64", "size": list(inputs["size"]),
            "channels": int(inputs["channels"]), "crop_to_aspect_ratio": bool(inputs.get("crop_to_aspect_ratio"))}
