"""Same-field detection: pairs of images that show the same scene, shifted.

A perceptual hash changes when a smear field is re-shot with a shift; a cross-correlation
over shifts does not. The score of a pair is the largest normalised cross-correlation
(NCC) of their greyscale thumbnails over every shift at which the two overlap by at
least ``MIN_OVERLAP`` of their area, the NCC computed on the overlap only (Padfield's
masked NCC, as ``skimage.registration.phase_cross_correlation`` with masks).

1. :func:`screen`: every pair (within a class by default) scored at half resolution,
   in batches of FFTs; pairs above ``SCREEN_THRESHOLD`` are candidates.
2. :func:`register`: each candidate registered at full thumbnail resolution with
   scikit-image; ``score`` is the Pearson correlation of the overlap at that shift and
   ``detail`` the same on high-passed thumbnails (fine texture, not layout).
3. :func:`find_pairs`: the registered pairs scoring at least ``THRESHOLD``.

:func:`calibration_scores` gives the scores of the candidates and of random pairs, from
which ``THRESHOLD`` was chosen; :func:`phase_correlation` is an independent similarity
(whitened cross-power spectrum peak) for leak checks of a finished split.

The score separates scenes (smear fields, tissue); on centred single-cell crops any two
cells correlate strongly, so :func:`find_pairs` refuses data where random pairs reach the
threshold.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image
from scipy import fft, ndimage

from . import content_cache, pair_scores
from .errors import DataError
from .progress_lines import LoopProgress

SIZE = 112
MIN_OVERLAP = 0.5
SCREEN_FACTOR = 2
SCREEN_THRESHOLD = 0.4
# Calibrated on Taleqani ALL (notebook 00): 2,000 random same-class pairs score at most 0.34
# (99th percentile 0.29); of 1.4 million pairs, those scoring 0.44-0.50 inspected were different
# fields with near-maximal shifts, those scoring 0.55 and more the same field re-shot (shifted,
# refocused). The threshold sits at the bottom of that gap, erring toward grouping.
THRESHOLD = 0.5
DETAIL_SIGMA = 2.0
PAIR_COLUMNS = ["i", "j", "score", "detail", "dy", "dx"]
WORKERS = max(1, min(4, os.cpu_count() or 1))


def thumbnail(path, size: int = SIZE) -> np.ndarray:
    """Greyscale ``size x size`` float32 thumbnail (box filter) of one image file."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L").resize((size, size), Image.BOX), dtype=np.float32)


def thumbnails(paths, size: int = SIZE) -> np.ndarray:
    """:func:`thumbnail` of every path, stacked ``(n, size, size)``: read once per file content (kept in the user
    cache, :mod:`hemasuite.content_cache`), decoded in a thread pool."""
    paths = [str(p) for p in paths]

    def decode():
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            stack = list(pool.map(lambda p: thumbnail(p, size), paths))
        return paths, np.stack(stack) if stack else np.empty((0, size, size), np.float32)

    stored, stack = content_cache.cached("thumbnails", content_cache.fingerprint(paths, size), decode)[0]
    if stored == paths:
        return stack
    where = {path: number for number, path in enumerate(stored)}
    return stack[[where[path] for path in paths]]


def downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Block means over ``factor x factor`` pixels (size must divide)."""
    n, h, w = images.shape
    return images.reshape(n, h // factor, factor, w // factor, factor).mean(axis=(2, 4))


# ----------------------------------------------------------------------------- batched masked NCC

@dataclass
class _Bank:
    """Per-image FFTs and overlap sums, so that a pair costs one inverse FFT."""

    spectra: np.ndarray
    fixed_mean: np.ndarray
    moving_mean: np.ndarray
    fixed_scale: np.ndarray
    moving_scale: np.ndarray
    flat: np.ndarray
    shifts: np.ndarray
    padded: int


def _bank(images: np.ndarray, min_overlap: float = MIN_OVERLAP) -> _Bank:
    n, size, _ = images.shape
    padded = size + int(size * (1 - min_overlap))  # no wrap-around for any admissible shift
    signed = np.fft.fftfreq(padded, 1 / padded).astype(int)
    extent = np.clip(size - np.abs(signed), 0, None)
    overlap = np.outer(extent, extent).ravel()
    flat = np.flatnonzero(overlap >= min_overlap * size * size)
    pixels = overlap[flat].astype(np.float32)
    x = images - images.mean(axis=(1, 2), keepdims=True)
    x = (x / (x.std(axis=(1, 2), keepdims=True) + 1e-6)).astype(np.float32)
    shape = (padded, padded)
    spectra = fft.rfft2(x, s=shape, workers=WORKERS)
    squares = fft.rfft2(x * x, s=shape, workers=WORKERS)
    mask = fft.rfft2(np.ones((size, size), np.float32), s=shape)

    def overlap_sum(product):
        return fft.irfft2(product, s=shape, workers=WORKERS).reshape(n, -1)[:, flat]

    root = np.sqrt(pixels)
    fixed_mean = overlap_sum(spectra * mask.conj()) / root
    moving_mean = overlap_sum(mask * spectra.conj()) / root

    def scale(square_sum, mean):
        variance = square_sum - mean * mean
        return np.where(variance > 1e-3 * pixels, 1 / np.sqrt(np.maximum(variance, 1e-12)), 0).astype(np.float32)

    fixed_scale = scale(overlap_sum(squares * mask.conj()), fixed_mean)
    moving_scale = scale(overlap_sum(mask * squares.conj()), moving_mean)
    shifts = np.column_stack(np.unravel_index(flat, shape))
    shifts = np.where(shifts > padded // 2, shifts - padded, shifts)
    return _Bank(spectra.astype(np.complex64), fixed_mean.astype(np.float32), moving_mean.astype(np.float32),
                 fixed_scale, moving_scale, flat, shifts, padded)


def _best_shift_scores(bank: _Bank, pairs: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Largest masked NCC of each index pair over admissible shifts, and that shift ``(dy, dx)``."""
    scores = np.empty(len(pairs), np.float32)
    best = np.empty(len(pairs), np.int64)
    shape = (bank.padded, bank.padded)
    progress = LoopProgress(len(pairs), "same-field screen", "pairs")
    for start in range(0, len(pairs), chunk):
        i, j = pairs[start:start + chunk, 0], pairs[start:start + chunk, 1]
        product = fft.irfft2(bank.spectra[i] * bank.spectra[j].conj(), s=shape, workers=WORKERS)
        ncc = product.reshape(len(i), -1)[:, bank.flat]
        ncc -= bank.fixed_mean[i] * bank.moving_mean[j]
        ncc *= bank.fixed_scale[i] * bank.moving_scale[j]
        best[start:start + chunk] = ncc.argmax(axis=1)
        scores[start:start + chunk] = ncc[np.arange(len(i)), best[start:start + chunk]]
        progress.update(len(i))
    progress.close()
    return scores, bank.shifts[best]


def index_pairs(labels, within_class: bool = True) -> np.ndarray:
    """Index pairs ``i < j``: all of them, or those with equal labels."""
    labels = np.asarray(labels)
    if not within_class:
        return np.column_stack(np.triu_indices(len(labels), 1))
    blocks = [np.empty((0, 2), np.int64)]
    for label in pd.unique(labels):
        members = np.flatnonzero(labels == label)
        i, j = np.triu_indices(len(members), 1)
        blocks.append(np.column_stack([members[i], members[j]]))
    return np.concatenate(blocks)


def screen(images: np.ndarray, labels, within_class: bool = True, threshold: float = SCREEN_THRESHOLD,
           factor: int = SCREEN_FACTOR) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (and their half-resolution scores) among all pairs, or all same-label pairs; each pair of
    these images is scored once, whatever the labels (:mod:`hemasuite.pair_scores`)."""
    pairs = index_pairs(labels, within_class)
    if not len(pairs):
        return pairs, np.empty(0, np.float32)

    def scores(images, pairs):
        return _best_shift_scores(_bank(downsample(images, factor)), pairs)[0]

    return pair_scores.at_least("same_field_screen", images, pairs, scores, threshold, factor=factor,
                                overlap=MIN_OVERLAP)


# ----------------------------------------------------------------------------- registration (scikit-image)

def high_pass(image: np.ndarray, sigma: float = DETAIL_SIGMA) -> np.ndarray:
    """The image minus its Gaussian blur: texture without the layout."""
    return image - ndimage.gaussian_filter(image, sigma)


def _overlap(a: np.ndarray, b: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """The parts of ``a`` and of ``b`` shifted by ``(dy, dx)`` that lie on each other."""
    h, w = a.shape
    return (a[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)],
            b[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)])


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    norm = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / norm) if norm > 0 else 0.0


def register_pairs(images: np.ndarray, pairs: np.ndarray, min_overlap: float = MIN_OVERLAP) -> pd.DataFrame:
    """Each pair registered with scikit-image's masked phase correlation; its overlap's NCC and detail NCC.

    Returns one row per pair: ``i, j, score, detail, dy, dx`` (image ``j`` shifted by
    ``(dy, dx)`` lies on image ``i``).
    """
    from skimage.registration import phase_cross_correlation

    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    mask = np.ones(images.shape[1:], bool)
    detail = {}

    def one(pair):
        i, j = pair
        shift = phase_cross_correlation(images[i], images[j], reference_mask=mask, moving_mask=mask,
                                        overlap_ratio=min_overlap)
        dy, dx = np.round(np.asarray(shift[0] if isinstance(shift, tuple) else shift)).astype(int)
        for k in (i, j):
            if k not in detail:
                detail[k] = high_pass(images[k])
        return (i, j, _pearson(*_overlap(images[i], images[j], dy, dx)),
                _pearson(*_overlap(detail[i], detail[j], dy, dx)), dy, dx)

    rows = [one(pair) for pair in pairs]
    frame = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    return frame.astype({"i": np.int64, "j": np.int64, "score": float, "detail": float,
                         "dy": np.int64, "dx": np.int64})


def random_pairs(labels, n: int, seed: int = 0, within_class: bool = True) -> np.ndarray:
    """``n`` distinct random index pairs ``i < j`` (same label by default), seeded."""
    pairs = index_pairs(labels, within_class)
    rng = np.random.default_rng(seed)
    return pairs[np.sort(rng.choice(len(pairs), size=min(n, len(pairs)), replace=False))]


def calibration_scores(images: np.ndarray, labels, n_random: int = 2000, seed: int = 0,
                       candidates: pd.DataFrame | None = None) -> pd.DataFrame:
    """Registered scores of the screened candidates and of random same-label pairs (``kind`` column).

    ``candidates`` (from :func:`find_pairs` with ``keep_all=True``) avoids screening again.
    Random pairs that are also candidates are kept in both: they show how often a random
    pair is a twin.
    """
    if candidates is None:
        candidates = register_pairs(images, screen(images, labels)[0])
    random = register_pairs(images, random_pairs(labels, n_random, seed))
    return pd.concat([candidates.assign(kind="candidate"), random.assign(kind="random")], ignore_index=True)


def check_separates(random: pd.DataFrame, threshold: float) -> None:
    """Raise :class:`DataError` when random pairs reach ``threshold`` in at least 1% of cases."""
    if len(random) >= 50 and (random["score"] >= threshold).mean() >= 0.01:
        share = (random["score"] >= threshold).mean()
        raise DataError(f"same-field threshold {threshold} does not separate these images: {share:.0%} of random "
                        f"same-class pairs reach it (median {random['score'].median():.2f}). Centred single-cell "
                        f"crops all look alike to a cross-correlation; detect same-field pairs only on scenes "
                        f"(smear fields, tissue), e.g. validate_dataset(..., same_field=False)")


def find_pairs(images: np.ndarray, labels, threshold: float = THRESHOLD, within_class: bool = True,
               keep_all: bool = False, n_random: int = 200, seed: int = 0) -> pd.DataFrame:
    """Same-field pairs: screened, registered, scoring at least ``threshold``.

    First checks on ``n_random`` random pairs that the threshold separates this data
    (:func:`check_separates`). ``keep_all`` returns every registered candidate instead.
    """
    if len(images) < 2:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    check_separates(register_pairs(images, random_pairs(labels, n_random, seed, within_class)), threshold)
    found = register_pairs(images, screen(images, labels, within_class)[0])
    return found if keep_all else found[found["score"] >= threshold].reset_index(drop=True)


def pair_cache_key(digests, labels, **parameters) -> str:
    """Content key of a detection run: file SHA-256s and labels in order, and the parameters."""
    text = "\n".join(f"{digest}\t{label}" for digest, label in zip(digests, labels))
    text += "\n" + repr(sorted(parameters.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# ----------------------------------------------------------------------------- independent similarity

def phase_correlation(images_a: np.ndarray, images_b: np.ndarray, pairs: np.ndarray, size: int = 56,
                      chunk: int = 512, what: str = "phase correlation") -> np.ndarray:
    """Peak of the phase-only correlation (whitened cross-power spectrum) of each pair ``(a_i, b_j)``.

    Computed on Hann-windowed ``size``-pixel thumbnails; 1 for identical images, near 0
    for unrelated ones. It weighs every frequency alike, unlike the NCC of :func:`register`.
    """
    window = np.outer(np.hanning(size), np.hanning(size)).astype(np.float32)

    def spectra(images):
        x = downsample(images, images.shape[1] // size) if images.shape[1] != size else images
        x = x - x.mean(axis=(1, 2), keepdims=True)
        return fft.rfft2(x * window, s=(2 * size, 2 * size), workers=WORKERS).astype(np.complex64)

    fa, fb = spectra(images_a), spectra(images_b)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    peaks = np.empty(len(pairs), np.float32)
    progress = LoopProgress(len(pairs), what, "pairs")
    for start in range(0, len(pairs), chunk):
        i, j = pairs[start:start + chunk, 0], pairs[start:start + chunk, 1]
        cross = fa[i] * fb[j].conj()
        cross /= np.abs(cross) + 1e-6
        peaks[start:start + chunk] = fft.irfft2(cross, s=(2 * size, 2 * size), workers=WORKERS).reshape(
            len(i), -1).max(axis=1)
        progress.update(len(i))
    progress.close()
    return peaks
