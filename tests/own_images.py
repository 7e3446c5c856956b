"""A class-per-folder image collection with planted defects, as a user's own images might be."""

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from hemasuite.datasets.synthetic import draw_cell

CLASSES = ("blast", "lymphocyte", "normal")


def bomb_png(path: Path, side: int = 40_000) -> Path:
    """A tiny PNG whose header declares ``side`` x ``side`` pixels (a decompression bomb); never decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def write_own_images(root: Path, per_class: int = 24, size: int = 64, seed: int = 0) -> dict[str, Path]:
    """``root/<class>/cell_<i>.png`` for three classes, plus one file of each defect; returns the defects by kind."""
    rng = np.random.default_rng(seed)
    for k, label in enumerate(CLASSES):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(draw_cell(rng, size, k)).save(root / label / f"cell_{i:03d}.png")
    (root / "empty_class").mkdir()
    (root / "empty_class" / "notes.txt").write_text("no images yet")
    (root / "blast" / "sub").mkdir()
    Image.fromarray(draw_cell(rng, size, 0)).save(root / "blast" / "sub" / "nested.png")
    Image.fromarray(draw_cell(rng, size, 1)).save(root / "lymphocyte" / "animated.gif")
    (root / "normal" / "readme.txt").write_text("scanned 2024")
    os.symlink(root / "nowhere.png", root / "normal" / "missing.png")
    (root / "lymphocyte" / "broken.jpg").write_bytes(b"this is not a JPEG at all")
    bomb_png(root / "normal" / "bomb.png")
    conflict = root / "normal" / "also_blast.png"
    conflict.write_bytes((root / "blast" / "cell_000.png").read_bytes())
    return {"empty_class": root / "empty_class", "nested_image": root / "blast" / "sub" / "nested.png",
            "unsupported_format": root / "lymphocyte" / "animated.gif", "not_an_image": root / "normal" / "readme.txt",
            "broken_link": root / "normal" / "missing.png", "unreadable": root / "lymphocyte" / "broken.jpg",
            "decompression_bomb": root / "normal" / "bomb.png", "conflict": conflict}
