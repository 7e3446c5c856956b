"""The augmentation families of the papers, seeded and applied to training data only.

- :func:`imagedatagenerator_layers`: P4's Keras ``ImageDataGenerator`` settings as Keras 3
  preprocessing layers (ImageDataGenerator no longer exists in Keras 3).
- :class:`AugmentorPipeline`: P3's Augmentor pipeline (rotate, random distortion, random
  zoom) re-implemented with NumPy and PIL, plus class balancing by generation.
- :func:`rot90_x4`: P5's four right-angle rotations of every image.

Each family has a ``describe`` dict for results.json.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
from PIL import Image

from . import config
from .errors import ParameterError

FILL_MODES = ("constant", "nearest", "reflect", "wrap")


def imagedatagenerator_layers(rotation_range: float = 20, width_shift: float = 0.1, height_shift: float = 0.1,
                              shear: float = 0.1, zoom: float = 0.1, horizontal_flip: bool = True,
                              fill_mode: str = "nearest", cval: float = 0.0, seed: int = 0):
    """A ``keras.Sequential`` of random layers equivalent to P4's ``ImageDataGenerator``.

    Parameter mapping (ImageDataGenerator -> Keras 3 layer):

    - ``rotation_range`` r degrees, angle uniform in [-r, r] -> ``RandomRotation(factor=r / 360)``
      (the factor is a fraction of a full turn).
    - ``width_shift_range`` / ``height_shift_range`` w, fractions of the size ->
      ``RandomTranslation(height_factor=h, width_factor=w)`` (same meaning).
    - ``shear_range`` s, an angle in *degrees* since Keras 2.2 (so 0.1 is barely visible) ->
      ``RandomShear(x_factor=tan(s))``. The layer shears about the top-left corner, not the centre.
    - ``zoom_range`` z, x and y scales drawn independently from [1 - z, 1 + z] (> 1 zooms out) ->
      ``RandomZoom(height_factor=(-z, z), width_factor=(-z, z))`` (same convention).
    - ``horizontal_flip`` -> ``RandomFlip("horizontal")``.
    - ``fill_mode`` / ``cval`` -> ``fill_mode`` / ``fill_value`` of every layer; the four
      names (constant, nearest, reflect, wrap) mean the same in both.

    ImageDataGenerator composes one affine transform and interpolates once; the layers
    interpolate (bilinear) once each, which blurs slightly more. Layers with a zero range
    are left out. Works on float batches in any value range, e.g. [0, 1] or [0, 255],
    inside ``tf.data`` maps; each layer is seeded with ``seed + i``.
    """
    import keras

    if fill_mode not in FILL_MODES:
        raise ParameterError(f"fill_mode={fill_mode!r} is not one of {list(FILL_MODES)}")
    fill = {"fill_mode": fill_mode, "fill_value": cval, "interpolation": "bilinear"}
    specs = []
    if rotation_range:
        specs.append((keras.layers.RandomRotation, {"factor": rotation_range / 360, **fill}))
    if width_shift or height_shift:
        specs.append((keras.layers.RandomTranslation, {"height_factor": height_shift, "width_factor": width_shift,
                                                       **fill}))
    if shear:
        specs.append((keras.layers.RandomShear, {"x_factor": math.tan(math.radians(shear)), **fill}))
    if zoom:
        specs.append((keras.layers.RandomZoom, {"height_factor": (-zoom, zoom), "width_factor": (-zoom, zoom),
                                                **fill}))
    if horizontal_flip:
        specs.append((keras.layers.RandomFlip, {"mode": "horizontal"}))
    layers = [layer(seed=seed + offset, **kwargs) for offset, (layer, kwargs) in enumerate(specs)]
    return keras.Sequential(layers, name="imagedatagenerator")


def describe_imagedatagenerator(**params) -> dict:
    """results.json entry of :func:`imagedatagenerator_layers` called with ``params``."""
    bound = inspect.signature(imagedatagenerator_layers).bind(**params)
    bound.apply_defaults()
    return {"name": "imagedatagenerator", "paper": "P4", "implementation": "Keras 3 preprocessing layers",
            "parameters": dict(bound.arguments), "applies_to": "train only",
            "notes": "shear in degrees as in ImageDataGenerator; one bilinear resampling per layer"}


class AugmentorPipeline:
    """P3's Augmentor pipeline: rotate, distort, zoom, each with its own probability.

    - ``rotate_range``: with ``rotate_probability``, an integer angle up to
      ``max_rotation`` degrees left or right (Augmentor draws the side, then the angle,
      so 0 is more likely), then the largest centred rectangle with the image's aspect
      ratio that holds no empty corner is cropped and resized back (bicubic).
    - ``random_distortion``: with ``distort_probability``, every inner vertex of a
      ``grid`` x ``grid`` mesh moves by integers in [-magnitude, magnitude]; PIL's
      ``Image.MESH`` transform warps each cell (bicubic).
    - ``zoom_random``: with ``zoom_probability``, a random crop of ``percentage_area`` of
      each side (Augmentor's meaning; 0.9 keeps 81 % of the area) resized back.

    Augmentor fires an operation when ``round(uniform(0, 1), 1) <= p`` (effectively
    p + 0.05); here the probability is exactly p. Deterministic per ``seed``.
    """

    def __init__(self, seed: int = 0, rotate_probability: float = 0.4, max_rotation: int = 3,
                 distort_probability: float = 0.4, grid: int = 4, magnitude: int = 4,
                 zoom_probability: float = 0.2, percentage_area: float = 0.9):
        self.seed = seed
        self.rotate_probability, self.max_rotation = rotate_probability, max_rotation
        self.distort_probability, self.grid, self.magnitude = distort_probability, grid, magnitude
        self.zoom_probability, self.percentage_area = zoom_probability, percentage_area
        self.rng = np.random.default_rng(seed)

    def __call__(self, image) -> np.ndarray:
        """One augmented copy of a PIL image or ``(H, W, 3)`` uint8 array, as an array."""
        return self.augment(image, self.rng)

    def augment(self, image, rng: np.random.Generator) -> np.ndarray:
        """Apply the three operations, drawing every random number from ``rng``."""
        image = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        if rng.random() < self.rotate_probability:
            side = rng.integers(2)
            angle = int(rng.integers(0, self.max_rotation + 1)) * (1 if side else -1)
            image = rotate_crop(image, angle)
        if rng.random() < self.distort_probability:
            image = distort(image, self.grid, self.magnitude, rng)
        if rng.random() < self.zoom_probability:
            image = zoom_random(image, self.percentage_area, rng)
        return np.asarray(image)

    def generate_to_count(self, images, labels, target_per_class: int, seed: int | None = None,
                          include_originals: bool = True):
        """Balance classes by generating augmented copies until each has ``target_per_class``.

        For every class, source images are drawn uniformly with replacement from that
        class and augmented. With ``include_originals`` the originals come first and only
        the shortfall is generated (a class already at or above the target is kept as
        is); without, exactly ``target_per_class`` generated images per class are returned,
        like Augmentor's ``Pipeline.sample``. Returns ``(images, labels, source_index)``:
        stacked arrays, where ``source_index[i]`` is the index in ``images`` of the
        original that row ``i`` comes from (use it to keep copies in their source's split).
        ``seed`` (default: the pipeline's own generator) makes the result reproducible.
        """
        rng = self.rng if seed is None else np.random.default_rng(seed)
        labels = np.asarray(labels)
        out_images, out_labels, sources = [], [], []
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            chosen = list(members) if include_originals else []
            drawn = rng.choice(members, size=max(target_per_class - len(chosen), 0), replace=True)
            out_images += [np.asarray(images[i]) for i in chosen] + [self.augment(images[i], rng) for i in drawn]
            sources += chosen + list(drawn)
            out_labels += [label] * (len(chosen) + len(drawn))
        return np.stack(out_images), np.asarray(out_labels), np.asarray(sources, dtype=np.int64)

    def describe(self) -> dict:
        """results.json entry of this pipeline."""
        return {"name": "augmentor", "paper": "P3", "implementation": "NumPy / PIL re-implementation of Augmentor",
                "parameters": {"seed": self.seed,
                               "rotate": {"probability": self.rotate_probability,
                                          "max_left_rotation": self.max_rotation,
                                          "max_right_rotation": self.max_rotation},
                               "random_distortion": {"probability": self.distort_probability,
                                                     "grid_width": self.grid, "grid_height": self.grid,
                                                     "magnitude": self.magnitude},
                               "zoom_random": {"probability": self.zoom_probability,
                                               "percentage_area": self.percentage_area}},
                "applies_to": "train only",
                "notes": "exact probabilities (Augmentor's rounding adds 0.05); rotation crops the largest "
                         "same-aspect rectangle; generated copies keep their source index"}


def rotate_crop(image: Image.Image, angle: float) -> Image.Image:
    """Rotate by ``angle`` degrees, crop the largest centred same-aspect rectangle without empty corners, resize
    back."""
    if angle == 0:
        return image
    width, height = image.size
    rotated = image.rotate(angle, resample=Image.BICUBIC, expand=True)
    cos, sin = abs(math.cos(math.radians(angle))), abs(math.sin(math.radians(angle)))
    scale = min(width / (width * cos + height * sin), height / (width * sin + height * cos))
    crop_w, crop_h = width * scale, height * scale
    left, top = (rotated.width - crop_w) / 2, (rotated.height - crop_h) / 2
    box = tuple(round(v) for v in (left, top, left + crop_w, top + crop_h))
    return rotated.crop(box).resize((width, height), Image.BICUBIC)


def distort(image: Image.Image, grid: int, magnitude: int, rng: np.random.Generator) -> Image.Image:
    """Augmentor's random distortion: move the inner vertices of a ``grid`` x ``grid`` mesh, warp with
    ``Image.MESH``."""
    width, height = image.size
    xs = [i * (width // grid) for i in range(grid)] + [width]
    ys = [j * (height // grid) for j in range(grid)] + [height]
    shift = np.zeros((grid + 1, grid + 1, 2), dtype=int)
    shift[1:-1, 1:-1] = rng.integers(-magnitude, magnitude + 1, size=(grid - 1, grid - 1, 2))

    def vertex(j, i):
        return xs[i] + shift[j, i, 0], ys[j] + shift[j, i, 1]

    mesh = [((xs[i], ys[j], xs[i + 1], ys[j + 1]),
             (*vertex(j, i), *vertex(j + 1, i), *vertex(j + 1, i + 1), *vertex(j, i + 1)))
            for j in range(grid) for i in range(grid)]
    return image.transform(image.size, Image.MESH, mesh, resample=Image.BICUBIC)


def zoom_random(image: Image.Image, percentage_area: float, rng: np.random.Generator) -> Image.Image:
    """Augmentor's ``zoom_random``: crop ``percentage_area`` of each side at a random place, resize back."""
    width, height = image.size
    crop_w, crop_h = int(width * percentage_area), int(height * percentage_area)
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    return image.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.BICUBIC)


def rot90_x4(images, labels, groups=None):
    """P5's rotation set: every image followed by its 90, 180 and 270 degree rotations.

    ``images`` is ``(N, S, S, C)`` (square); returns ``(4N, S, S, C)`` images where row
    ``4 * i + k`` is image ``i`` rotated by ``k * 90`` degrees counter-clockwise, with
    ``labels`` and ``groups`` (None stays None) repeated to match.
    """
    images = np.asarray(images)
    if images.shape[1] != images.shape[2]:
        raise ParameterError(f"rot90_x4 needs square images, got {images.shape[1]}x{images.shape[2]}")
    rotated = np.stack([np.rot90(images, k, axes=(1, 2)) for k in range(4)], axis=1)
    def repeat(values):
        return None if values is None else np.repeat(np.asarray(values), 4)
    return rotated.reshape(-1, *images.shape[1:]), repeat(labels), repeat(groups)


def describe_rot90() -> dict:
    """results.json entry of :func:`rot90_x4`."""
    return {"name": "rot90_x4", "paper": "P5", "implementation": "numpy.rot90",
            "parameters": {"angles_deg": [0, 90, 180, 270]}, "applies_to": "train only",
            "notes": "multiplies the training set by 4; rotations share their source's group"}


def orientation_layers(seed: int = 0):
    """Random horizontal / vertical flips and rotations: a cell has no canonical orientation."""
    import keras

    return keras.Sequential([keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
                             keras.layers.RandomRotation(0.5, fill_mode="reflect", seed=seed + 1)],
                            name="orientation")


def describe_orientation() -> dict:
    """results.json entry of :func:`orientation_layers`."""
    return {"name": "orientation", "implementation": "keras.layers.RandomFlip + RandomRotation(0.5, reflect)",
            "parameters": {"flips": "horizontal and vertical", "rotation_deg": [-180, 180]},
            "applies_to": "training batches only"}


def dihedral(seed: int):
    """Batch augmentation: random horizontal / vertical flips and transposes (the 8 symmetries of a square).

    Lossless (no interpolation), cheap at any image size, and the same eight views that
    :func:`hemasuite.experiment.dihedral_predict` averages at test time.
    """
    import keras
    import tensorflow as tf

    flip = keras.layers.RandomFlip("horizontal_and_vertical", seed=seed)

    def apply(images):
        images = flip(images, training=True)
        transpose = tf.random.uniform([tf.shape(images)[0]], seed=seed) < 0.5
        return tf.where(transpose[:, None, None, None], tf.transpose(images, [0, 2, 1, 3]), images)

    return apply


def describe_dihedral() -> dict:
    """results.json entry of :func:`dihedral`."""
    return {"name": "dihedral", "implementation": "keras RandomFlip (both axes) + random transpose",
            "parameters": {"views": "the 8 flips / right-angle rotations"}, "applies_to": "training batches only",
            "notes": "lossless: no interpolation of the texture"}


CELL_AUGMENTATIONS = ("dihedral", "rotation", "none")


def cell_augmentation(name: str):
    """Training-batch augmentation factory ``f(seed)`` for single-cell images, or None for ``"none"``.

    ``dihedral``: :func:`dihedral` (lossless, cheap at any size); ``rotation``:
    :func:`orientation_layers` (flips + rotation by any angle, interpolated).
    """
    config.check_choice("augmentation", name, list(CELL_AUGMENTATIONS))
    return {"dihedral": dihedral, "rotation": lambda seed: orientation_layers(seed=seed), "none": None}[name]


def describe_cell_augmentation(name: str) -> dict | None:
    """results.json entry of :func:`cell_augmentation`."""
    config.check_choice("augmentation", name, list(CELL_AUGMENTATIONS))
    return {"dihedral": describe_dihedral, "rotation": describe_orientation, "none": lambda: None}[name]()
