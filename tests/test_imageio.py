"""Every image mode the datasets may hold reads as RGB uint8; bad files give a clear error."""

import numpy as np
import pytest
from PIL import Image

from hemasuite.errors import ImageReadError
from hemasuite.imageio import read_rgb


@pytest.mark.parametrize("mode,suffix", [("L", ".png"), ("RGBA", ".png"), ("I;16", ".png"), ("CMYK", ".jpg"),
                                         ("P", ".png"), ("RGB", ".bmp"), ("RGB", ".tif")])
def test_modes_become_rgb(tmp_path, mode, suffix):
    path = tmp_path / f"image{suffix}"
    image = Image.new(mode, (10, 6), 3000 if mode == "I;16" else 128 if mode in ("L", "P") else (10, 20, 30, 40))
    image.save(path)
    pixels = read_rgb(path)
    assert pixels.shape == (6, 10, 3) and pixels.dtype == np.uint8
    assert read_rgb(path, size=4).shape == (4, 4, 3)


def test_sixteen_bit_is_rescaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 30000], [60000, 65535]], dtype=np.uint16)).save(path)
    pixels = read_rgb(path)[..., 0]
    assert pixels.max() == 255 and 0 < pixels[0, 1] < pixels[1, 0] < 255


@pytest.mark.parametrize("content,reason", [(b"", "empty file"), (b"not an image at all", "not a decodable image")])
def test_bad_files_name_path_and_reason(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as error:
        read_rgb(path)
    assert error.value.path == str(path)


def test_truncated_jpeg(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(ImageReadError, match="cut.jpg"):
        read_rgb(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist"):
        read_rgb(tmp_path / "nope.png")
