"""PyTorch ``.pth`` files written without PyTorch, laid out as ``torch.save`` writes them (for the reader's tests)."""

import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

from hemasuite.models import torch_state


@contextlib.contextmanager
def fake_torch_modules():
    """Just enough of a ``torch`` module for pickle to write the globals a real .pth file holds."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = FloatStorage, utils, _rebuild_tensor_v2
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "torch", torch)
        patch.setitem(sys.modules, "torch._utils", utils)
        yield torch


class FakeStorage:
    def __init__(self, key, values):
        self.key, self.values = key, np.asarray(values, dtype=np.float32)


class FakeTensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride)

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (*self.args, False, OrderedDict())


class TorchPickler(pickle.Pickler):
    def __init__(self, stream, storage_type):
        super().__init__(stream, protocol=2)
        self.storage_type = storage_type

    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return "storage", self.storage_type, obj.key, "cpu", obj.values.size
        return None


def write_pth(path, state, storages, storage_type, legacy: bool):
    """A .pth file laid out as PyTorch writes it (legacy stream or zip archive)."""
    body = io.BytesIO()
    TorchPickler(body, storage_type).dump(state)
    if legacy:
        with open(path, "wb") as stream:
            for header in (torch_state.LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
                pickle.dump(header, stream, protocol=2)
            stream.write(body.getvalue())
            pickle.dump([s.key for s in storages], stream, protocol=2)
            for storage in storages:
                stream.write(struct.pack("<q", storage.values.size) + storage.values.astype("<f4").tobytes())
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", body.getvalue())
            archive.writestr("archive/byteorder", "little")
            for storage in storages:
                archive.writestr(f"archive/data/{storage.key}", storage.values.astype("<f4").tobytes())


def write_state_dict(path, arrays: dict, legacy: bool = False):
    """``arrays`` (name -> float32 array) as a state dict, each tensor in its own contiguous storage."""
    storages = [FakeStorage(str(i), np.ravel(array)) for i, array in enumerate(arrays.values())]
    state = OrderedDict((name, FakeTensor(storage, 0, np.shape(array), contiguous_strides(np.shape(array))))
                        for (name, array), storage in zip(arrays.items(), storages))
    with fake_torch_modules() as torch:
        write_pth(path, state, storages, torch.FloatStorage, legacy)


def contiguous_strides(shape) -> tuple:
    """Row-major strides in elements."""
    return tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
