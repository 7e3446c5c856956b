"""Pair scores computed once per image content, whichever labels ask for the pairs.

The same-field screen and the look-alike check score every same-class pair of images. A
relabelled view of the same images asks again for pairs another view has scored: P2's
binary stand-in merges Taleqani's three ALL classes into one, so its 3.9 million
same-class pairs hold the 4-class view's 1.4 million. :func:`at_least` scores each pair of
an image set once: the store kept in the user cache (:mod:`hemasuite.content_cache`) says
which pairs are done and holds those scoring at least the threshold, and a request scores
only the pairs not done yet.

An image is known by the SHA-256 of its pixels, so one store serves every order and every
labelling of the same images (pixel-identical images score alike, so their order does
not matter).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import content_cache


@dataclass
class Store:
    """Which pairs of ``n`` images (canonical order) are scored, and those scoring at least the threshold."""

    n: int
    done: np.ndarray  # packed bits over the n x n (row, column) grid; set at (a, b), a < b
    hits: np.ndarray  # sorted a * n + b of the pairs at or above the threshold
    scores: np.ndarray  # their scores

    @classmethod
    def empty(cls, n: int) -> "Store":
        return cls(n, np.packbits(np.zeros(n * n, bool)), np.empty(0, np.int64), np.empty(0, np.float32))


def canonical_order(images: np.ndarray) -> tuple[np.ndarray, str]:
    """Each image's place in the order of its pixels' SHA-256, and the key of that multiset of images."""
    digests = [hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest() for image in images]
    order = np.argsort(np.asarray(digests), kind="stable")
    place = np.empty(len(digests), np.int64)
    place[order] = np.arange(len(digests))
    key = hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()
    return place, key


def at_least(kind: str, images: np.ndarray, pairs, score: Callable[[np.ndarray, np.ndarray], np.ndarray],
             threshold: float, **settings) -> tuple[np.ndarray, np.ndarray]:
    """The index pairs of ``pairs`` (into ``images``) that score at least ``threshold``, and their scores, in the
    order of ``pairs``.

    ``score(images, some_pairs)`` is called once, with the pairs no earlier request scored
    (none where all were); ``kind`` and ``settings`` name the score (a store per kind,
    images, threshold and settings).
    """
    images = np.asarray(images)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    place, images_key = canonical_order(images)
    key = hashlib.sha256(repr((images_key, float(threshold), sorted(settings.items()))).encode()).hexdigest()[:32]
    n = len(images)
    stored = content_cache.load_entry("pair_scores", f"{kind}_{key}")
    store = stored if isinstance(stored, Store) and stored.n == n else Store.empty(n)
    a, b = place[pairs[:, 0]], place[pairs[:, 1]]
    cells = np.minimum(a, b) * n + np.maximum(a, b)
    done = np.unpackbits(store.done, count=n * n).astype(bool)
    missing = ~done[cells]
    if missing.any():
        scores = np.asarray(score(images, pairs[missing]), dtype=np.float32)
        keep = scores >= threshold
        hits = np.concatenate([store.hits, cells[missing][keep]])
        values = np.concatenate([store.scores, scores[keep]])
        order = np.argsort(hits, kind="stable")
        done[cells[missing]] = True
        store = Store(n, np.packbits(done), hits[order], values[order])
        content_cache.store_entry("pair_scores", f"{kind}_{key}", store)
    where = np.clip(np.searchsorted(store.hits, cells), 0, max(len(store.hits) - 1, 0))
    found = (store.hits[where] == cells) if len(store.hits) else np.zeros(len(cells), bool)
    return pairs[found], store.scores[where[found]]
