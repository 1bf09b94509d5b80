"""A ``pytorch_model.bin`` read into numpy without torch: GLuCoSE's hub files hold only that.

torch's own file (since torch 1.6) is a zip: ``…/data.pkl``, a pickle of the state dict whose tensors
name their storages, and ``…/data/N``, each storage's bytes, stored uncompressed. The pickle is read
with only the classes a state dict of tensors needs (an ``OrderedDict``, ``_rebuild_tensor_v2`` and
the typed storages); any other name stops it (``pickle.UnpicklingError``), as ``torch.load``'s
``weights_only`` does, so a file that would run code is never run. Importing torch costs a first start
a second; this, nothing.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

# torch's typed storages, as its pickles name them, and what their bytes are
STORAGES: dict[str, Any] = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",  # numpy has none: widened to float32
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Storage:
    """A storage type named by the pickle (``torch.FloatStorage``…): what its bytes are read as."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = STORAGES[name]

    def decode(self, raw: bytes) -> np.ndarray:
        if self.dtype == "bfloat16":
            return (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        return np.frombuffer(raw, dtype=self.dtype)


def _rebuild_tensor(
    storage: np.ndarray, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *rest: object
) -> np.ndarray:
    """torch's ``_rebuild_tensor_v2``: ``storage`` from ``offset`` with ``size`` and ``stride`` (a view where
    the tensor is in C order, as a state dict's are; else copied into it)."""
    count = int(np.prod(size, dtype=np.int64))
    contiguous = tuple(int(np.prod(size[i + 1 :], dtype=np.int64)) for i in range(len(size)))
    if tuple(stride) == contiguous or count <= 1:
        return storage[offset : offset + count].reshape(tuple(size))
    strides = tuple(step * storage.itemsize for step in stride)
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size), strides=strides, writeable=False)
    return np.array(view)


def read(path: Path) -> dict[str, np.ndarray]:
    """The state dict in torch's zip file ``path``, each tensor as a numpy array.

    Raises ``ValueError`` for a file in torch's older (not zip) form or a pickle that names anything
    but tensors; the caller then lets torch read it.
    """
    if not zipfile.is_zipfile(path):
        raise ValueError("torch の古い形式のファイルです")
    with zipfile.ZipFile(path) as archive:
        found = [name for name in archive.namelist() if name.endswith("data.pkl")]
        if len(found) != 1:
            raise ValueError("torch のファイルではありません")
        prefix = found[0][: -len("data.pkl")]
        storages: dict[str, np.ndarray] = {}

        def storage(key: str, kind: _Storage) -> np.ndarray:
            if key not in storages:
                storages[key] = kind.decode(archive.read(f"{prefix}data/{key}"))
            return storages[key]

        with archive.open(found[0]) as handle:
            try:
                state = _Reader(handle, storage).load()
            except (pickle.UnpicklingError, KeyError, TypeError) as error:
                raise ValueError(f"torch のファイルを読めません（{error}）") from error
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise ValueError("テンソルの辞書ではありません")
    return dict(state)


class _Reader(pickle.Unpickler):
    """The pickle of a state dict, with only the names a state dict of tensors needs."""

    def __init__(self, handle: IO[bytes], storage: Any) -> None:
        super().__init__(handle)
        self._storage = storage

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGES:
            return _Storage(name)
        raise pickle.UnpicklingError(f"{module}.{name} は読みません")

    def persistent_load(self, pid: Any) -> np.ndarray:
        kind, storage_type, key = pid[0], pid[1], pid[2]
        if kind != "storage" or not isinstance(storage_type, _Storage):
            raise pickle.UnpicklingError(f"{kind} は読みません")
        return self._storage(str(key), storage_type)
