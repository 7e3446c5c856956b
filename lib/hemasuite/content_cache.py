"""Work done once per dataset content and kept in the user cache (:func:`hemasuite.config.cache_dir`).

A dataset's validation report, its greyscale thumbnails and its look-alike pairs do not
depend on the notebook or the split, so every notebook reads them from here:

- :func:`fingerprint`: the content key of a list of files (sorted paths and the SHA-256 of
  each file's bytes, :func:`file_digest`): a changed, added or removed file gives another
  key, while a copy with new modification times (a re-downloaded or re-mounted dataset)
  keeps it;
- :func:`cached`: a value loaded from ``<cache>/<kind>/<key>.pkl`` or computed and stored
  there (written atomically; an unreadable entry is computed again); :func:`load_entry` and
  :func:`store_entry` for a value that grows (:mod:`hemasuite.pair_scores`).

Entries are never overwritten in place and never trusted across :data:`VERSION` changes.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

from . import config

VERSION = 1  # bump when what a cached value means changes
T = TypeVar("T")


def file_digest(path) -> str:
    """SHA-256 of a file's bytes (hashing both datasets' 188 MB takes about 0.2 s)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def fingerprint(paths, *extra, ordered: bool = False) -> str:
    """Content key of the files ``paths`` (each path with the SHA-256 of its bytes; sorted unless ``ordered``, for a
    value that follows their order) and of ``extra`` values."""
    digest = hashlib.sha256(f"v{VERSION}\n".encode())
    for path in (list(map(str, paths)) if ordered else sorted(map(str, paths))):
        try:
            digest.update(f"{path}\t{file_digest(path)}\n".encode())
        except OSError:
            digest.update(f"{path}\tmissing\n".encode())
    digest.update(repr(extra).encode())
    return digest.hexdigest()[:32]


def entry(kind: str, key: str) -> Path:
    """Where the value of ``kind`` with ``key`` is kept."""
    return config.cache_dir() / kind / f"{key}.pkl"


def load_entry(kind: str, key: str):
    """The stored value of ``kind``/``key``, or None where there is none or it is unreadable (from other code)."""
    path = entry(kind, key)
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
        return None


def store_entry(kind: str, key: str, value) -> None:
    """Keep ``value`` as ``kind``/``key``, written atomically: a reader sees the old entry or the new one."""
    path = entry(kind, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            pickle.dump(value, out, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def cached(kind: str, key: str, compute: Callable[[], T]) -> tuple[T, bool]:
    """``(value, hit)``: the stored value of ``kind``/``key``, or ``compute()`` stored for the next caller."""
    value = load_entry(kind, key)
    if value is not None:
        return value, True
    value = compute()
    store_entry(kind, key, value)
    return value, False
