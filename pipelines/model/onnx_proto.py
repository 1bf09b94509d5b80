"""The few ONNX messages ``onnx_graph`` writes, encoded as protobuf here: a first start does not import ``onnx``.

Importing the ``onnx`` package costs 0.7 s on a 2-core CPU (``ml_dtypes``' extension), a sixth of the
first start's check. Its graph needs five messages of ``onnx.proto`` (model, graph, node, attribute,
tensor, and the value infos of the inputs and outputs), written with their field numbers below:
varints and length-delimited fields, nothing else. ``tests/pipelines/test_onnx_graph.py`` parses the
result with ``onnx`` itself.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import numpy as np

# TensorProto.DataType
FLOAT, UINT8, INT8, INT32, INT64, BOOL = 1, 2, 3, 6, 7, 9
DATA_TYPES = {
    np.dtype(np.float32): FLOAT,
    np.dtype(np.uint8): UINT8,
    np.dtype(np.int8): INT8,
    np.dtype(np.int32): INT32,
    np.dtype(np.int64): INT64,
    np.dtype(np.bool_): BOOL,
}
# AttributeProto.AttributeType
_ATTRIBUTE_FLOAT, _ATTRIBUTE_INT, _ATTRIBUTE_INTS = 1, 2, 7
# the IR version of ONNX 1.13 (opset 17's), which every ONNX Runtime since 1.14 reads
IR_VERSION = 8


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # a negative int64 is ten bytes, as protobuf writes it
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def integer(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value)


def message(field: int, body: bytes) -> bytes:
    """A length-delimited field: a string, bytes or an embedded message."""
    return _key(field, 2) + _varint(len(body)) + body


def text(field: int, value: str) -> bytes:
    return message(field, value.encode("utf-8"))


def tensor(
    name: str,
    value: np.ndarray | None = None,
    *,
    dtype: np.dtype | None = None,
    shape: Sequence[int] = (),
    outside: tuple[str, int, int] | None = None,
) -> bytes:
    """A TensorProto: ``value`` inside it (raw data), or only its type and shape, its data in a file
    (``outside``: the file's name, the offset and the length in bytes)."""
    if value is not None:
        dtype, shape = value.dtype, value.shape
    assert dtype is not None
    body = b"".join(integer(1, int(d)) for d in shape) + integer(2, DATA_TYPES[np.dtype(dtype)]) + text(8, name)
    if value is not None:
        body += message(9, np.ascontiguousarray(value).tobytes())
    if outside is not None:
        location, offset, length = outside
        for key, entry in (("location", location), ("offset", str(offset)), ("length", str(length))):
            body += message(13, text(1, key) + text(2, entry))
        body += integer(14, 1)  # data_location: EXTERNAL
    return body


def attribute(name: str, value: int | float | Sequence[int]) -> bytes:
    body = text(1, name)
    if isinstance(value, bool | int):
        return body + integer(3, int(value)) + integer(20, _ATTRIBUTE_INT)
    if isinstance(value, float):
        return body + _key(2, 5) + struct.pack("<f", value) + integer(20, _ATTRIBUTE_FLOAT)
    return body + b"".join(integer(8, int(v)) for v in value) + integer(20, _ATTRIBUTE_INTS)


def node(op: str, inputs: Iterable[str], outputs: Iterable[str], domain: str = "", **attributes: object) -> bytes:
    body = b"".join(text(1, name) for name in inputs) + b"".join(text(2, name) for name in outputs)
    body += text(4, op) + b"".join(message(5, attribute(k, v)) for k, v in sorted(attributes.items()))  # type: ignore[arg-type]
    return body + (text(7, domain) if domain else b"")


def value_info(name: str, elem_type: int, dims: Sequence[int | str]) -> bytes:
    """An input or output: its name, element type and shape (a dimension by size or by name)."""
    shape = b"".join(message(1, integer(1, d) if isinstance(d, int) else text(2, d)) for d in dims)
    return text(1, name) + message(2, message(1, integer(1, elem_type) + message(2, shape)))


def model(
    nodes: Iterable[bytes],
    initializers: Iterable[bytes],
    inputs: Iterable[bytes],
    outputs: Iterable[bytes],
    opsets: dict[str, int],
    name: str,
    producer: str,
) -> bytes:
    """A ModelProto around one GraphProto."""
    graph = b"".join(message(1, n) for n in nodes) + text(2, name)
    graph += b"".join(message(5, t) for t in initializers)
    graph += b"".join(message(11, i) for i in inputs) + b"".join(message(12, o) for o in outputs)
    body = integer(1, IR_VERSION) + text(2, producer) + message(7, graph)
    return body + b"".join(
        message(8, (text(1, domain) if domain else b"") + integer(2, v)) for domain, v in opsets.items()
    )
