"""Read any image file the datasets contain as an RGB uint8 array.

Handles grayscale, palette, RGBA, 16-bit and CMYK files; every failure becomes an
:class:`ImageReadError` naming the file and the reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageReadError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
DECODE_ERRORS = (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError)
OBJECT_REPR = re.compile(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>")  # "<_io.BytesIO object at 0x7f...>": differs every run


def describe_error(error: Exception) -> str:
    """An exception as a message that is the same on every run: object addresses removed."""
    text = OBJECT_REPR.sub("", str(error)).strip()
    return text or type(error).__name__


def too_many_pixels(width: int, height: int) -> str | None:
    """Why an image of ``width`` x ``height`` is refused as a possible decompression bomb, or None."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > limit:
        return (f"decompression bomb: {width}x{height} = {width * height:,} pixels, more than the limit of "
                f"{limit:,} (PIL.Image.MAX_IMAGE_PIXELS)")
    return None


def is_image_file(path: Path) -> bool:
    """True for the file types the loaders pick up (case-insensitive suffix)."""
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (alpha dropped onto white, 16-bit rescaled)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        high = array.max()
        scale = 255.0 / high if high > 0 else 0.0
        return Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8)).convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def open_checked(path) -> Image.Image:
    """Open and fully decode ``path``; every failure becomes an :class:`ImageReadError`."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        with Image.open(path) as image:
            bomb = too_many_pixels(image.width, image.height)
            if bomb:
                raise ImageReadError(path, bomb)
            image.load()
            return image.copy()
    except Image.DecompressionBombError as error:
        raise ImageReadError(path, f"decompression bomb: {describe_error(error)}") from error
    except DECODE_ERRORS as error:
        raise ImageReadError(path, f"not a decodable image ({describe_error(error)})") from error


def read_rgb(path, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Return the image at ``path`` as an ``(H, W, 3)`` uint8 array.

    ``size`` (an int for a square, or ``(height, width)``) resizes with bilinear
    interpolation. Raises :class:`ImageReadError` for missing, empty, truncated or
    undecodable files.
    """
    image = open_checked(path)
    if image.width == 0 or image.height == 0:
        raise ImageReadError(path, "image has zero width or height")
    rgb = to_rgb(image)
    if size is not None:
        height, width = (size, size) if isinstance(size, int) else size
        rgb = rgb.resize((width, height), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)

