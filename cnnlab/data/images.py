"""Image files to uint8 pixels: the one decoder that image folders (training) and
`cnnlab predict` share, so a photo is seen the same way in both; and the image files that
`predict` and `explain` are given (files, folders, patterns).

Files are read with Pillow, turned upright by their EXIF orientation (phone photos are often
stored sideways with a tag that says so), converted to the colour mode, cropped or padded to
the size's aspect ratio when the format's resize_mode says so, and resized; for display
(`read_picture`), upright in RGB at their own size.
"""

from __future__ import annotations

import glob
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnlab.config import ImageFormat
from cnnlab.utils.console import progress
from cnnlab.utils.errors import DataError

# Keras' image_dataset_from_directory's extensions, and the other photo formats Pillow reads
# without plugins (phones and browsers save WebP, scanners TIFF).
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Files operating systems and tools leave beside images; never data, never worth a word.
SYSTEM_FILES = {".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini"}
SYSTEM_FOLDERS = {"__macosx"}  # macOS's zip resource-fork folder
_PIL_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}  # Pillow's modes of deep grayscale
_ORIENTATION = 0x0112  # the EXIF tag; values 5-8 store the photo turned by a quarter
_TURNED = {5, 6, 7, 8}


def is_hidden(name: str) -> bool:
    """Hidden and system entries (`.DS_Store`, `._x.jpg`, `Thumbs.db`, `__MACOSX`): ignored."""
    folded = name.casefold()
    return name.startswith(".") or folded in SYSTEM_FILES or folded in SYSTEM_FOLDERS


def extension_problem(filename: str) -> str | None:
    """Why a file name rules the file out as an image, or None."""
    ext = os.path.splitext(filename)[1].lower()
    if ext not in EXTENSIONS:
        return f"unsupported extension ({ext or 'none'}; readable: {' '.join(EXTENSIONS)})"
    return None


class Unusable(Exception):
    """A file that cannot be used as an image; the message is '<kind> (<detail>)'."""


class TooManyPixels(Unusable):
    """An image larger than the caller's `max_pixels`, found from its header alone."""


class Original(NamedTuple):
    """An image file as stored: its upright size in pixels and Pillow's colour mode ("RGB",
    "L", "RGBA", "P", "CMYK", ...)."""

    width: int
    height: int
    mode: str


class Decoded(NamedTuple):
    """decode_files' answer: the images of the usable files, which of the paths those are,
    (path, reason) for the others, and the usable files' Original sizes and modes."""

    images: np.ndarray
    ok: np.ndarray
    problems: list[tuple[str, str]]
    originals: list[Original]


def read_image(source: Path | bytes, fmt: ImageFormat, max_pixels: int | None = None) -> np.ndarray:
    """One image, a file or its bytes (an upload), as uint8 pixels of `fmt`'s shape, upright
    as its EXIF tag says.

    An image with more pixels than Pillow's limit (Image.MAX_IMAGE_PIXELS, about 89 million:
    a decompression bomb, a few KB that decode to gigabytes) is refused before it is decoded,
    and so is one with more than `max_pixels` (a server's own, smaller limit).

    Raises:
        TooManyPixels: over `max_pixels`.
        Unusable: with the reason the image cannot be used.
    """
    return _read(source, fmt, max_pixels)[0]


def _read(
    source: Path | bytes, fmt: ImageFormat, max_pixels: int | None = None
) -> tuple[np.ndarray, Original]:
    """read_image's pixels, and the Original the file holds."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        if isinstance(source, bytes):
            if not source:
                raise Unusable("empty file (0 bytes)")
            source = io.BytesIO(source)
        elif os.path.getsize(source) == 0:
            raise Unusable("empty file (0 bytes)")
        with Image.open(source) as img:
            # The header gives the size: refuse before a byte of pixels is allocated.
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise TooManyPixels(
                    f"too many pixels ({img.width:,} x {img.height:,} = "
                    f"{img.width * img.height:,}; at most {max_pixels:,})"
                )
            # Pillow refuses twice its limit and only warns past it: refuse both alike.
            if img.width * img.height > (Image.MAX_IMAGE_PIXELS or float("inf")):
                raise Image.DecompressionBombError(
                    f"{img.width} x {img.height}, over the limit of {Image.MAX_IMAGE_PIXELS:,}"
                )
            original = _original(img)
            mode = _PIL_MODES[fmt.color_mode]
            # JPEG can decode straight to a smaller scale: far faster for large photos.
            img.draft(mode, _draft_size(img.size, original, fmt))
            img.load()  # decodes every byte now: truncated files fail here
            img = _upright(_eight_bit(img, Image), ImageOps)
            if img.mode != mode:
                img = img.convert(mode)
            img = _to_aspect_ratio(img, fmt, Image)
            if img.size != (fmt.width, fmt.height):
                resample = getattr(Image.Resampling, fmt.interpolation.upper())
                img = img.resize((fmt.width, fmt.height), resample)
            return np.asarray(img, np.uint8).reshape(fmt.shape), original
    except UnidentifiedImageError:
        raise Unusable("not an image (Pillow cannot identify it)") from None
    except FileNotFoundError:
        raise Unusable("missing (the file is gone)") from None
    except Image.DecompressionBombError as e:
        raise Unusable(f"too many pixels ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise Unusable(f"damaged image ({str(e) or type(e).__name__})") from None


def _region(width: int, height: int, fmt: ImageFormat) -> tuple[int, int]:
    """(width, height) of what is resized to `fmt`'s size, for an upright picture of `width` x
    `height`: the picture (squash), its centred part of `fmt`'s aspect ratio (crop), or the
    picture padded to that ratio (pad); whole pixels, rounded down, as Keras' resize counts."""
    if fmt.resize_mode == "squash":
        return width, height
    # Each side as long as the other side asks at fmt's aspect ratio.
    wide, tall = height * fmt.width // fmt.height, width * fmt.height // fmt.width
    if fmt.resize_mode == "crop":
        return max(min(width, wide), 1), max(min(height, tall), 1)
    return max(width, wide), max(height, tall)


def _to_aspect_ratio(img, fmt: ImageFormat, image_module):
    """The upright picture cropped to its centre or padded with black around it (Keras'
    crop_to_aspect_ratio and pad_to_aspect_ratio), as `fmt`'s resize_mode says."""
    width, height = img.size
    region = _region(width, height, fmt)
    if region == img.size:
        return img
    if fmt.resize_mode == "crop":
        left, top = (width - region[0]) // 2, (height - region[1]) // 2
        return img.crop((left, top, left + region[0], top + region[1]))
    canvas = image_module.new(img.mode, region)  # zeros: black, and transparent in RGBA
    canvas.paste(img, ((region[0] - width) // 2, (region[1] - height) // 2))
    return canvas


def _draft_size(stored: tuple[int, int], original: Original, fmt: ImageFormat) -> tuple[int, int]:
    """The size, as stored, to ask Pillow's JPEG draft for (it decodes at 1/2, 1/4 or 1/8
    scale, never below the size asked) so that what is resized to `fmt`'s size keeps at
    least `fmt`'s pixels."""
    if fmt.resize_mode == "squash":
        # A square, so that a sideways-stored photo is still large enough once turned.
        side = max(fmt.height, fmt.width)
        return side, side
    # The crop, or the photo within the padding, is resized by one factor on both sides: the
    # whole upright photo needs that factor times its size (rounded up) to keep fmt's pixels.
    width, height = original.width, original.height
    region_width, region_height = _region(width, height, fmt)
    needs = (-(-width * fmt.width // region_width), -(-height * fmt.height // region_height))
    return needs if stored == (width, height) else needs[::-1]  # stored turned by a quarter


def read_picture(path: Path, longest: int) -> np.ndarray:
    """An image file as a person sees it, for display: uint8 RGB, upright as its EXIF tag
    says, at its own size or shrunk (Lanczos) so that its long side is at most `longest`.

    Raises:
        Unusable: with the reason the image cannot be shown.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            if img.width * img.height > (Image.MAX_IMAGE_PIXELS or float("inf")):
                raise Unusable(f"too many pixels ({img.width:,} x {img.height:,})")
            img.draft("RGB", (longest, longest))  # JPEG: decode at a smaller scale, faster
            img.load()
            img = _upright(_eight_bit(img, Image), ImageOps).convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise Unusable(f"damaged image ({str(e) or type(e).__name__})") from None
    img.thumbnail((longest, longest), Image.Resampling.LANCZOS)  # shrinks only, keeps the shape
    return np.asarray(img, np.uint8)


def _eight_bit(img, image_module):
    """16-bit grayscale (PNG, TIFF) as 8 bits, each value's top byte: Pillow's own conversion
    clips every value above 255 to white."""
    if img.mode not in _SIXTEEN_BIT:
        return img
    values = np.asarray(img)
    if img.mode == "I":  # 32-bit integers, which hold 16-bit files in older Pillows
        values = np.clip(values, 0, 65535)
    return image_module.fromarray((values.astype(np.uint32) >> 8).astype(np.uint8))


def _original(img) -> Original:
    width, height = img.size
    try:
        turned = img.getexif().get(_ORIENTATION, 1) in _TURNED
    except (OSError, SyntaxError, ValueError, TypeError, KeyError):
        turned = False  # as _upright: a malformed EXIF block leaves the picture as stored
    return Original(height, width, img.mode) if turned else Original(width, height, img.mode)


def _upright(img, image_ops):
    # A malformed EXIF block is no reason to lose the picture: keep it as stored.
    try:
        return image_ops.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, ZeroDivisionError):
        return img


def decode_files(paths: list[Path], fmt: ImageFormat, description: str | None = None) -> Decoded:
    """Decode `paths` in parallel threads (Pillow decodes without the GIL); with a
    `description`, the progress is shown (cnnlab.utils.console).

    Returns:
        uint8 images (N, height, width, channels) of the files that could be read, a boolean
        mask of which of `paths` those are, (path, reason) for the others, sorted, and the
        readable files' sizes and modes as stored.
    """
    images = np.empty((len(paths), *fmt.shape), np.uint8)
    ok = np.zeros(len(paths), bool)
    problems: list[tuple[str, str]] = []
    originals: list[Original | None] = [None] * len(paths)

    def work(i: int) -> None:
        try:
            images[i], originals[i] = _read(paths[i], fmt)
        except Unusable as e:
            problems.append((str(paths[i]), str(e)))
            return
        ok[i] = True

    with (
        progress(description or "", len(paths) if description else 0) as advance,
        ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool,
    ):
        for _ in pool.map(work, range(len(paths))):
            advance(1)
    problems.sort()
    kept = [found for found in originals if found is not None]
    return Decoded(images if ok.all() else images[ok], ok, problems, kept)


def collect_image_files(inputs: list[str]) -> tuple[list[Path], int]:
    """The image files that `inputs` name, in order and without repeats, and how many other
    files the folders held.

    A file named on its own is always tried; folders are searched recursively for image
    extensions, skipping hidden and system files; patterns (*, ?, [) are expanded as globs
    (** crosses folders).

    Raises:
        DataError: an input that names nothing, or no image file at all.
    """
    found: dict[Path, None] = {}
    ignored = 0
    for text in inputs:
        path = Path(text)
        if path.is_file():
            found[path] = None
            continue
        if path.is_dir():
            matches = [path]
        elif glob.has_magic(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            if not matches:
                raise DataError(f"{text}: no file matches this pattern")
        else:
            raise DataError(f"{text}: no such file or folder")
        for match in matches:
            if match.is_dir():
                images, others = _images_under(match)
                found.update(dict.fromkeys(images))
                ignored += others
            elif not is_hidden(match.name):
                found[match] = None
    if not found:
        raise DataError(f"no image files ({' '.join(EXTENSIONS)}) in {', '.join(inputs)}")
    return list(found), ignored


def _images_under(folder: Path) -> tuple[list[Path], int]:
    """Image files under `folder` (recursively, sorted) and how many other files it holds."""
    images, others = [], 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for name in sorted(filenames):
            if is_hidden(name):
                continue
            if extension_problem(name) is None:
                images.append(Path(dirpath) / name)
            else:
                others += 1
    return images, others
