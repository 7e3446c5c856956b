"""PyTorch ``.pth`` state dicts as NumPy arrays, without PyTorch and without running pickle code.

A ``.pth`` file is a pickle whose tensors point at raw storages, either in a zip archive
(``*/data.pkl`` + ``*/data/<key>``) or, in the legacy format, in the bytes that follow the
pickle. The unpickler here resolves only the tensor-rebuild and storage globals and
``collections.OrderedDict``, to harmless stand-ins; any other global (``os.system``,
``builtins.eval`` ...) is refused before it can be called.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UnsafePickleError, WeightsError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

STORAGE_DTYPES = {"DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
                  "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                  "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


@dataclass(frozen=True)
class StorageType:
    """Stand-in for ``torch.FloatStorage`` etc.: only carries the element type."""

    dtype: type


class Storage:
    """One raw storage; ``data`` (a flat NumPy array) is filled once its bytes are read."""

    def __init__(self, key: str, dtype, numel: int):
        self.key, self.dtype, self.numel = key, np.dtype(dtype), int(numel)
        self.data: np.ndarray | None = None


@dataclass(frozen=True)
class TensorRef:
    """A tensor as ``storage[offset]`` viewed with ``size`` and ``stride`` (in elements)."""

    storage: Storage
    offset: int
    size: tuple
    stride: tuple

    def array(self) -> np.ndarray:
        flat = self.storage.data
        if not self.size:
            return flat[self.offset].copy()
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) + 1
        if min(self.size) > 0 and (self.offset < 0 or last > flat.size):
            raise WeightsError(f"tensor of size {self.size} overruns storage {self.storage.key} ({flat.size} elements)")
        strides = tuple(s * flat.itemsize for s in self.stride)
        return np.lib.stride_tricks.as_strided(flat[self.offset:], self.size, strides, writeable=False).copy()


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """Stand-in for ``torch._utils._rebuild_tensor(_v2)``: records the view, builds nothing."""
    if not isinstance(storage, Storage):
        raise UnsafePickleError(f"tensor rebuilt from {type(storage).__name__}, not from a storage")
    return TensorRef(storage, int(storage_offset), tuple(map(int, size)), tuple(map(int, stride)))


def _rebuild_parameter(data, *_ignored):
    """Stand-in for ``torch._utils._rebuild_parameter``: a parameter is its tensor."""
    return data


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`ALLOWED_GLOBALS` and records the storages it meets."""

    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source
        self.storages: dict[str, Storage] = {}
        self.views: list[tuple[Storage, str, int]] = []

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.source}: refusing to load the global {module}.{name}; a weights file may only use "
                f"torch tensor-rebuild and storage globals and collections.OrderedDict") from None

    def persistent_load(self, pid):
        """``('storage', type, key, location, numel[, view_metadata])`` -> a shared :class:`Storage`."""
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], StorageType)):
            raise UnsafePickleError(f"{self.source}: unexpected persistent id {pid!r:.120}")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if key not in self.storages:
            self.storages[key] = Storage(key, storage_type.dtype, numel)
        storage = self.storages[key]
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return storage
        view_key, view_offset, view_size = view
        part = Storage(str(view_key), storage.dtype, view_size)
        self.views.append((part, key, int(view_offset)))
        return part


def _materialise(value):
    """Replace every :class:`TensorRef` in nested containers by its NumPy array."""
    if isinstance(value, TensorRef):
        return value.array()
    if isinstance(value, dict):
        return type(value)((k, _materialise(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_materialise(v) for v in value)
    return value


def _load_zip(path: Path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise WeightsError(f"{path}: a zip .pth archive holds exactly one data.pkl, found {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() != b"little":
            raise WeightsError(f"{path}: big-endian tensors are not supported")
        unpickler = RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), str(path))
        result = unpickler.load()
        for key, storage in unpickler.storages.items():
            raw = archive.read(f"{prefix}data/{key}")
            storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"), count=storage.numel)
    return result


def _load_legacy(path: Path):
    with open(path, "rb") as stream:
        header = RestrictedUnpickler(stream, str(path))
        if header.load() != LEGACY_MAGIC:
            raise WeightsError(f"{path} is neither a zip nor a legacy PyTorch archive")
        _protocol, sys_info = header.load(), header.load()
        if not sys_info.get("little_endian", False):
            raise WeightsError(f"{path}: big-endian tensors are not supported")
        unpickler = RestrictedUnpickler(stream, str(path))
        result = unpickler.load()
        keys = RestrictedUnpickler(stream, str(path)).load()
        for key in keys:
            storage = unpickler.storages[str(key)]
            (count,) = struct.unpack("<q", stream.read(8))
            raw = stream.read(count * storage.dtype.itemsize)
            if len(raw) != count * storage.dtype.itemsize:
                raise WeightsError(f"{path} is truncated in storage {key}")
            storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))
    for part, root, offset in unpickler.views:
        part.data = unpickler.storages[root].data[offset: offset + part.numel]
    return result


def load_state_dict(path) -> OrderedDict:
    """Name -> NumPy array of a PyTorch ``.pth`` state dict (zip or legacy format)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        result = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError, TypeError, ValueError) as error:
        raise WeightsError(f"{path} is not a readable PyTorch state dict: {error}") from error
    if isinstance(result, dict) and "state_dict" in result:
        result = result["state_dict"]
    if not isinstance(result, dict):
        raise WeightsError(f"{path} holds a {type(result).__name__}, not a state dict")
    return OrderedDict((name, np.asarray(value)) for name, value in _materialise(result).items())
