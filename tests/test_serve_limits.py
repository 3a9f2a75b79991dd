"""The limits of `cnnlab serve` that need no trained model: an image's size read from its
header."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from cnnlab.config import ImageFormat
from cnnlab.data.images import TooManyPixels, read_image


def test_read_image_refuses_more_than_max_pixels_from_the_header():
    out = io.BytesIO()
    Image.new("RGB", (9000, 9000), (10, 20, 30)).save(out, "PNG")
    data = out.getvalue()
    assert len(data) < 300_000  # 243 MB of pixels in a few hundred KB
    fmt = ImageFormat(32, 32, "rgb")
    begin = time.perf_counter()
    with pytest.raises(TooManyPixels, match=r"9,000 x 9,000 = 81,000,000; at most 50,000,000"):
        read_image(data, fmt, max_pixels=50_000_000)
    assert time.perf_counter() - begin < 0.5  # decoding would take seconds
    assert read_image(_png(64, 48), fmt, max_pixels=64 * 48).shape == (32, 32, 3)


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height)).save(out, "PNG")
    return out.getvalue()
