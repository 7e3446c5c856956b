"""Input pipeline: decode every image once (with an on-disk cache), then feed tf.data.

- :func:`load_images` decodes and resizes a frame's files into one uint8 array, in
  parallel, and caches it as ``.npy`` keyed by the files and the size.
- :func:`make_dataset` turns arrays into batches of rescaled float32 images and one-hot
  labels; only training datasets are shuffled and augmented.
- :func:`path_dataset` decodes inside tf.data instead (cold first epoch, cached after).
- :func:`extract_patches` / :func:`patches_from_images` tile images at native resolution;
  :func:`random_tiles` feeds training with new random crops of them every epoch.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import content_cache
from .errors import DataError, ParameterError
from .imageio import read_rgb

TF_DECODABLE = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def _hw(size) -> tuple[int, int] | None:
    """``size`` (int, (height, width) or None) as (height, width) or None."""
    return None if size is None else (size, size) if isinstance(size, int) else tuple(size)


def cache_key(paths, size) -> str:
    """Key of decoded images: every file's path and the SHA-256 of its bytes in order, and the target size
    (:func:`hemasuite.content_cache.fingerprint`)."""
    return content_cache.fingerprint(paths, _hw(size), ordered=True)[:20]


def load_images(frame, size, cache_dir=None, workers: int | None = None) -> np.ndarray:
    """Every image of ``frame["path"]`` as one ``(N, H, W, 3)`` uint8 array, in frame order.

    ``size`` is an int (square), ``(height, width)``, or None for native size (all images
    must then share one size). Files are decoded by :func:`hemasuite.imageio.read_rgb` on
    ``workers`` threads (default: CPU count + 4). With ``cache_dir``, the array is saved
    as ``images_<key>.npy`` there and reloaded whenever the paths, the files' bytes and
    ``size`` are unchanged. Unreadable files raise :class:`ImageReadError`.
    """
    paths = [str(p) for p in frame["path"]]
    target = None
    if cache_dir is not None:
        target = Path(cache_dir) / f"images_{cache_key(paths, size)}.npy"
        if target.is_file():
            return np.load(target)
    height_width = _hw(size)
    with ThreadPoolExecutor(max_workers=workers or (os.cpu_count() or 1) + 4) as pool:
        decoded = list(pool.map(lambda path: read_rgb(path, height_width), paths))
    shapes = sorted({image.shape for image in decoded})
    if len(shapes) > 1:
        raise DataError(f"images differ in size {shapes[:5]}; pass size= to resize them to one size")
    images = np.stack(decoded) if decoded else np.zeros((0, *(height_width or (0, 0)), 3), np.uint8)
    if target is not None:
        save_array(images, target)
    return images


def save_array(array: np.ndarray, target: Path) -> None:
    """Save ``array`` as ``.npy`` through a temporary file, so a crash never leaves half a cache entry."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    with open(partial, "wb") as handle:
        np.save(handle, array)
    os.replace(partial, target)


def _prepare(rescale: float, n_classes: int):
    """tf.data map: uint8 batch -> float32 ``* rescale``, integer labels -> one-hot."""
    import tensorflow as tf

    def prepare(images, labels):
        return tf.cast(images, tf.float32) * rescale, tf.one_hot(labels, n_classes)

    return prepare


def _finish(ds, n_classes, batch_size, training, seed, augment, rescale, shuffle_buffer, size):
    """Shared tail: shuffle (training), batch, rescale + one-hot, augment (training), prefetch."""
    import tensorflow as tf

    if training:
        ds = ds.shuffle(shuffle_buffer or max(size, 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(_prepare(rescale, n_classes), num_parallel_calls=tf.data.AUTOTUNE)
    if training and augment is not None:
        ds = ds.map(lambda images, labels: (augment(images), labels))
    return with_batch_size(ds.prefetch(tf.data.AUTOTUNE), batch_size)


def with_batch_size(ds, batch_size: int):
    """``ds`` carrying its global batch size (``ds.global_batch_size``), which training records."""
    ds.global_batch_size = int(batch_size)
    return ds


def make_dataset(images, labels, n_classes: int, batch_size: int, training: bool, seed: int = 0, augment=None,
                 rescale: float = 1 / 255, shuffle_buffer: int | None = None):
    """Batches ``(float32 images * rescale, one-hot labels)`` from in-memory arrays.

    ``images`` are uint8 ``(N, H, W, C)`` (e.g. from :func:`load_images`), ``labels``
    integer class ids. When ``training``: reshuffled every epoch (seeded, buffer = whole
    set unless ``shuffle_buffer``) and ``augment`` (a callable on float batches, e.g.
    :func:`hemasuite.augment.imagedatagenerator_layers`) is applied after rescaling.
    Evaluation datasets keep their order and are never augmented. The arrays are already
    in memory, so no ``.cache()`` (it would hold a second copy).
    """
    import tensorflow as tf

    labels = np.asarray(labels, dtype=np.int32)
    if len(images) != len(labels):
        raise ParameterError(f"{len(images)} images but {len(labels)} labels")
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    return _finish(ds, n_classes, batch_size, training, seed, augment, rescale, shuffle_buffer, len(labels))


def path_dataset(frame, size, n_classes: int, batch_size: int, classes: list[str] | None = None,
                 training: bool = False, seed: int = 0, augment=None, rescale: float = 1 / 255,
                 shuffle_buffer: int | None = None):
    """Like :func:`make_dataset`, but decodes JPEG / PNG / BMP / GIF files inside tf.data.

    Images are decoded (``tf.io.decode_image``, 3 channels; alpha is dropped, not
    composited as in :func:`load_images`), resized with antialiased bilinear interpolation,
    rounded to uint8 and ``.cache()``-d in memory: the first epoch decodes, later ones
    read the cache. Labels are the index of ``frame["label"]`` in ``classes`` (default:
    the sorted labels, which must number ``n_classes``).
    """
    import tensorflow as tf

    classes = list(classes) if classes is not None else sorted(frame["label"].unique())
    if len(classes) != n_classes:
        raise ParameterError(f"{len(classes)} classes {classes} but n_classes={n_classes}; pass classes=")
    unsupported = sorted({Path(p).suffix for p in frame["path"] if Path(p).suffix.lower() not in TF_DECODABLE})
    if unsupported:
        raise ParameterError(f"tf.data cannot decode {unsupported} files; use load_images + make_dataset")
    lookup = {name: index for index, name in enumerate(classes)}
    labels = np.asarray([lookup[label] for label in frame["label"]], dtype=np.int32)
    height_width = _hw(size)

    def decode(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.image.resize(image, height_width, method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), label

    ds = tf.data.Dataset.from_tensor_slices((frame["path"].astype(str).to_numpy(), labels))
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).cache()
    return _finish(ds, n_classes, batch_size, training, seed, augment, rescale, shuffle_buffer, len(labels))


def extract_patches(image: np.ndarray, patch_size, stride) -> np.ndarray:
    """Tiles ``(n, ph, pw, C)`` of one image at native resolution, row by row.

    Windows start every ``stride`` pixels; when the last one stops short of the right or
    bottom edge, one more window flush with that edge is added, so the tiles cover
    every pixel. ``patch_size`` and ``stride`` are ints or ``(height, width)``.
    """
    (ph, pw), (sh, sw) = _hw(patch_size), _hw(stride)
    height, width = image.shape[:2]
    if ph > height or pw > width:
        raise ParameterError(f"patch {ph}x{pw} is larger than the image {height}x{width}")

    def starts(length, patch, step):
        points = list(range(0, length - patch + 1, step))
        return points + [length - patch] if points[-1] != length - patch else points

    return np.stack([image[top:top + ph, left:left + pw]
                     for top in starts(height, ph, sh) for left in starts(width, pw, sw)])


def patches_from_images(images, labels, patch_size, stride):
    """Tiles of every image with their labels and the index of the image each comes from.

    Returns ``(patches, patch_labels, source_index)``; split by image (or its group)
    before tiling, never by tile.
    """
    tiles = [extract_patches(np.asarray(image), patch_size, stride) for image in images]
    source_index = np.repeat(np.arange(len(tiles)), [len(t) for t in tiles])
    return np.concatenate(tiles), np.asarray(labels)[source_index], source_index


def random_tiles(images, labels, n_classes: int, tile: int, tiles_per_epoch: int, batch_size: int, seed: int = 0,
                 augment=None, rescale: float = 1 / 255):
    """Training batches of random ``tile`` x ``tile`` crops of native-resolution images, new crops every epoch.

    Every epoch draws ``tiles_per_epoch`` crops: each image ``ceil(tiles_per_epoch / N)``
    times in a fresh (seeded) order, cut to ``tiles_per_epoch``, each crop at a uniformly
    random position. Crop positions come from stateless seeds, so a run is reproducible.
    ``augment`` and ``rescale`` as in :func:`make_dataset`.
    """
    import tensorflow as tf

    images, labels = np.asarray(images), np.asarray(labels, dtype=np.int32)
    if len(images) != len(labels) or not len(images):
        raise ParameterError(f"random_tiles needs as many labels as images (at least one): {len(images)} images, "
                             f"{len(labels)} labels")
    if tile > min(images.shape[1:3]):
        raise ParameterError(f"tile {tile} is larger than the images ({images.shape[1]}x{images.shape[2]})")
    if tiles_per_epoch < 1:
        raise ParameterError(f"tiles_per_epoch must be at least 1, not {tiles_per_epoch}")
    pixels, classes = tf.constant(images), tf.constant(labels)
    repeats = int(np.ceil(tiles_per_epoch / len(images)))
    order = tf.data.Dataset.from_tensor_slices(np.tile(np.arange(len(images), dtype=np.int32), repeats))
    order = order.shuffle(len(images) * repeats, seed=seed, reshuffle_each_iteration=True).take(tiles_per_epoch)
    crop_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

    def crop(index, crop_seed):
        return (tf.image.stateless_random_crop(tf.gather(pixels, index), [tile, tile, images.shape[3]], crop_seed),
                tf.gather(classes, index))

    ds = tf.data.Dataset.zip((order, crop_seeds)).map(crop, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size).map(_prepare(rescale, n_classes), num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        ds = ds.map(lambda batch, onehot: (augment(batch), onehot))
    return with_batch_size(ds.prefetch(tf.data.AUTOTUNE), batch_size)
