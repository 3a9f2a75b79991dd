"""Data health: duplicates and leakage between splits, conflicting labels, class counts, and
the images' sizes, aspect ratios and colour modes as stored.

Every image gets a hash of its decoded pixels (exact copies) and, for the whole image and for
its centre at each of SCALES, a 64-bit perceptual hash (`imagehash.phash`: the signs of the
lowest frequencies of a 32x32 grayscale DCT), which survives re-encoding, resizing and
brightness changes; the centres catch copies cropped a little. Pairs within
`MAX_DISTANCE` bits are found through an index (multi-index hashing: the hash cut into
MAX_DISTANCE + 1 pieces, two hashes that close share one piece exactly), never by comparing
all pairs. A close pair is kept only when the images also agree pixel by pixel (the correlation
of their 32x32 grayscale pictures at least MIN_CORRELATION), so that two handwritten ones,
alike by nature, are not called copies. Fingerprints are cached like decoded images.
"""

from __future__ import annotations

import hashlib

import numpy as np

from cnnlab.data.cache import load_arrays, store_arrays
from cnnlab.data.dataset import label_counts, label_text

MAX_DISTANCE = 6  # bits of 64 in which two perceptual hashes may differ
MIN_CORRELATION = 0.98  # of the two images' 32x32 grayscale thumbnails, to confirm a pair
THUMB = 32  # imagehash.phash's own 32x32 grayscale picture, kept to confirm pairs
PIECES = MAX_DISTANCE + 1
PRECISION = 22  # bits of Pillow's fixed-point resampling weights (8-bit images)
# A copy cropped by up to ~10% a side matches the original's centre at one of these scales.
SCALES = (1.0, 0.94, 0.86)
# A piece value shared by more images than this is skipped (found, if a copy, through another
# piece): all-alike images (digits, blank frames) would otherwise make the index quadratic.
MAX_GROUP = 150
LISTED = 50  # pairs of each kind written out in full (the counts cover all)
SPLITS = ("train", "val", "test")


def _lanczos(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) weights of Pillow's LANCZOS resampling of one axis, as the 22-bit
    fixed-point integers its 8-bit path sums with (Resample.c: precompute_coeffs, a 3-lobe
    Lanczos kernel widened by the reduction, rows summing to 1, then normalize_coeffs_8bpc),
    held in float64, in which the sums are exact."""
    scale = size_in / size_out
    spread = max(scale, 1.0)
    support = 3.0 * spread
    weights = np.zeros((size_out, size_in))
    for out in range(size_out):
        centre = (out + 0.5) * scale
        low = max(int(centre - support + 0.5), 0)
        high = min(int(centre + support + 0.5), size_in)
        v = (np.arange(low, high) - centre + 0.5) / spread
        taps = np.where((v >= -3.0) & (v < 3.0), np.sinc(v) * np.sinc(v / 3), 0.0)
        taps = taps / taps.sum() if taps.sum() != 0 else taps
        weights[out, low:high] = np.trunc(taps * (1 << PRECISION) + np.where(taps < 0, -0.5, 0.5))
    return weights


def _resize(gray: np.ndarray, size: int) -> np.ndarray:
    """uint8 pictures (N, H, W) resized to (N, size, size) as Pillow's 8-bit
    `resize((size, size), LANCZOS)` does it when it runs the horizontal pass first: each pass
    rounded and clipped to 8 bits. (Pillow picks the order itself, and may run the vertical pass
    first; its pictures then differ from these by a few grey levels here and there.)"""

    def rounded(sums: np.ndarray) -> np.ndarray:
        return np.clip(np.floor((sums + (1 << (PRECISION - 1))) / (1 << PRECISION)), 0, 255)

    height, width = gray.shape[1:]
    if (height, width) == (size, size):
        return gray
    across = rounded(gray.astype(np.float64) @ _lanczos(width, size).T)
    return rounded(np.matmul(_lanczos(height, size), across)).astype(np.uint8)


def fingerprints(x: np.ndarray) -> dict[str, np.ndarray]:
    """`exact` (uint64 hash of the pixels) of uint8 images (N, H, W, C), and per scale s of
    SCALES (the centre s x s of the image) `phash_s` (uint64: imagehash.phash's hash, computed
    for many images at once with the same grayscale conversion, resampling and DCT) and
    `gray_s` (N, 32*32 uint8: the grayscale picture the hash is made from, 1 KB an image)."""
    import scipy.fftpack

    n, height, width = x.shape[:3]
    exact = np.zeros(n, np.uint64)
    for i in range(n):
        exact[i] = int.from_bytes(hashlib.blake2b(x[i].tobytes(), digest_size=8).digest(), "big")
    grays = {scale: np.zeros((n, THUMB, THUMB), np.uint8) for scale in SCALES}
    step = max(1, (1 << 22) // (height * width))  # images a chunk: a few tens of MB of floats
    for start in range(0, n, step):
        part = x[start : start + step]
        if part.shape[-1] == 1:
            gray = part[..., 0]
        else:  # Pillow's RGB to L: ITU-R 601-2 luma in 16-bit fixed point
            rgb = part[..., :3].astype(np.uint32)
            gray = (rgb @ np.array([19595, 38470, 7471], np.uint32) + 0x8000) >> 16
            gray = gray.astype(np.uint8)
        for scale in SCALES:
            dx, dy = round(width * (1 - scale) / 2), round(height * (1 - scale) / 2)
            grays[scale][start : start + step] = _resize(
                gray[:, dy : height - dy, dx : width - dx], THUMB
            )
    out = {"exact": exact}
    for scale in SCALES:
        phash = np.zeros(n, np.uint64)
        for start in range(0, n, 4096):  # float work a few thousand images at a time
            pixels = grays[scale][start : start + 4096].astype(np.float64)
            dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=1), axis=2)[:, :8, :8]
            low = dct.reshape(len(pixels), 64)
            bits = low > np.median(low, axis=1, keepdims=True)
            phash[start : start + 4096] = np.packbits(bits, axis=1).view(">u8")[:, 0]
        out[f"phash_{scale}"] = phash
        out[f"gray_{scale}"] = grays.pop(scale).reshape(n, THUMB * THUMB)
    return out


def correlations(a: np.ndarray, b: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The correlation of grayscale pictures a[i] and b[j] (rows of uint8 pixels), pair by
    pair, a few thousand pairs at a time (float32: a few MB whatever the count); a flat
    picture correlates 0 with anything."""
    out = np.zeros(len(i), np.float32)
    for start in range(0, len(i), 4096):
        rows = slice(start, start + 4096)
        x, y = a[i[rows]].astype(np.float32), b[j[rows]].astype(np.float32)
        x -= x.mean(axis=1, keepdims=True)
        y -= y.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
        dot = np.einsum("nk,nk->n", x, y)
        out[rows] = np.where(norms > 0, dot / np.where(norms > 0, norms, 1), 0)
    return out


def cached_fingerprints(x: np.ndarray) -> dict[str, np.ndarray]:
    """fingerprints(x), from the cache when the same pixels were fingerprinted before."""
    key = hashlib.sha256(x.tobytes()).hexdigest()[:40] + f"-{x.shape}-v3".replace(" ", "")
    found = load_arrays("health", key)
    if found is None:
        found = fingerprints(x)
        store_arrays("health", key, found)
    return found


def _pieces(phash: np.ndarray) -> list[np.ndarray]:
    """The hash cut into PIECES pieces of about 64 / PIECES bits each."""
    edges = np.linspace(0, 64, PIECES + 1).astype(int)
    out = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        out.append((phash >> np.uint64(low)) & np.uint64((1 << int(high - low)) - 1))
    return out


def _candidates(
    piece_a: np.ndarray, piece_b: np.ndarray | None, max_group: int | None = MAX_GROUP
) -> np.ndarray:
    """(i, j) of images whose piece (or pixel hash) is equal: i < j within `piece_a` when
    `piece_b` is None, else i of a and j of b, skipping values shared by over `max_group`
    images. Keys i * len(b) + j."""
    same = piece_b is None
    values = piece_a if same else np.concatenate([piece_a, piece_b])
    width = len(piece_a) if same else len(piece_b)
    side = np.zeros(len(values), bool) if same else np.arange(len(values)) >= len(piece_a)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    bounds = np.flatnonzero(np.diff(ordered)) + 1
    keys = []
    for group in np.split(order, bounds):
        if len(group) < 2 or (max_group is not None and len(group) > max_group):
            continue
        if same:
            first, second = np.triu_indices(len(group), 1)
            i, j = group[first], group[second]
        else:
            in_b = side[group]
            left, right = group[~in_b], group[in_b] - len(piece_a)
            if not len(left) or not len(right):
                continue
            i, j = (m.ravel() for m in np.meshgrid(left, right, indexing="ij"))
        keys.append(i.astype(np.int64) * width + j)
    return np.concatenate(keys) if keys else np.zeros(0, np.int64)


def close_pairs(a: dict, b: dict | None = None) -> np.ndarray:
    """(i, j, distance) rows: images i of `a` and j of `b` (of `a` itself, i < j, when `b` is
    None) that are copies: the same pixels (distance -1), or, at some scale (either image
    whole against the other's centre), perceptual hashes within MAX_DISTANCE bits whose
    thumbnails correlate at least MIN_CORRELATION. `distance` is the smallest such."""
    same = b is None
    other = a if same else b
    if not len(a["exact"]) or not len(other["exact"]):
        return np.zeros((0, 3), np.int64)
    width = len(other["exact"])
    best: dict[int, int] = {}
    exact_keys = _candidates(a["exact"], None if same else other["exact"], max_group=None)
    for key in exact_keys.tolist():
        best[key] = -1
    # Within a split, copies are looked for whole against whole; across splits, each image's
    # centre against the other whole too.
    combos = [(1.0, 1.0)]
    if not same:
        combos += [(s, 1.0) for s in SCALES[1:]] + [(1.0, s) for s in SCALES[1:]]
    for scale_a, scale_b in combos:
        ha, hb = a[f"phash_{scale_a}"], other[f"phash_{scale_b}"]
        near = []  # keys of the pairs that share a piece and are within MAX_DISTANCE bits
        for pa, pb in zip(_pieces(ha), _pieces(hb), strict=True):
            keys = _candidates(pa, None if same else pb)
            bits = np.bitwise_count(ha[keys // width] ^ hb[keys % width])
            near.append(keys[bits <= MAX_DISTANCE])
        keys = np.unique(np.concatenate(near))  # a pair sharing several pieces counted once
        i, j = keys // width, keys % width
        if same:
            keep = i != j
            i, j = i[keep], j[keep]
        distance = np.bitwise_count(ha[i] ^ hb[j]).astype(np.int64)
        correlation = correlations(a[f"gray_{scale_a}"], other[f"gray_{scale_b}"], i, j)
        confirmed = correlation >= MIN_CORRELATION
        for ii, jj, d in zip(i[confirmed], j[confirmed], distance[confirmed], strict=True):
            if same and ii > jj:
                ii, jj = jj, ii
            key = int(ii) * width + int(jj)
            best[key] = min(best.get(key, 99), int(d))
    if not best:
        return np.zeros((0, 3), np.int64)
    keys = np.array(sorted(best), np.int64)
    return np.stack([keys // width, keys % width, np.array([best[k] for k in keys])], axis=1)


def check_health(data) -> dict:
    """The data health of a Dataset: class counts, duplicates within each split, copies across
    splits (leakage) and the same image under two classes (conflicting labels).

    Returns:
        What data_health.json holds; "leaked" gives, for each split after the first, the
        indices of its images that copy an image of an earlier split.
    """
    splits = {
        split: data.split(split) for split in SPLITS
        if data.split(split)[0] is not None and len(data.split(split)[0])
    }  # fmt: skip
    prints = {split: cached_fingerprints(x) for split, (x, _) in splits.items()}
    record: dict = {"classes": {}, "duplicates": {}, "leaks": {}, "conflicting_labels": []}
    for split, (_, y) in splits.items():
        if y is not None:  # with several labels per image: the images carrying each label
            counts = label_counts(y, len(data.class_names))
            record["classes"][split] = dict(zip(data.class_names, counts.tolist(), strict=True))
    train_counts = np.array(list(record["classes"].get("train", {}).values()))
    record["imbalance_ratio"] = (
        round(float(train_counts.max() / train_counts.min()), 2)
        if len(train_counts) and train_counts.min() > 0 else None
    )  # fmt: skip
    conflicts = []
    leaked: dict[str, set[int]] = {}
    names = list(splits)
    for a_index, a in enumerate(names):
        pairs = close_pairs(prints[a])
        record["duplicates"][a] = _summary(data, a, a, pairs, conflicts)
        for b in names[a_index + 1 :]:
            pairs = close_pairs(prints[a], prints[b])
            record["leaks"][f"{a}-{b}"] = _summary(data, a, b, pairs, conflicts)
            leaked.setdefault(b, set()).update(int(j) for j in pairs[:, 1])
    record["images"] = {split: image_sizes(data, split) for split in splits}
    record["conflicting_labels"] = conflicts[:LISTED]
    record["conflicting_label_pairs"] = len(conflicts)
    record["leaked"] = {split: sorted(found) for split, found in leaked.items() if found}
    return record


def image_sizes(data, split: str) -> dict:
    """The images of `split` as stored: width, height and aspect ratio (width / height) at
    their minimum, median and maximum, the colour modes and their counts, and how many are
    under half the size they are used at on either side (enlarged over 2x: blurred)."""
    x = data.split(split)[0]
    height, width, channels = x.shape[1:]
    found = data.originals.get(split)
    if found is not None and len(found["width"]) == len(x):
        widths, heights, modes = found["width"], found["height"], found["mode"]
        stored = "files"
    else:  # arrays (MNIST, CIFAR, CSV) are stored as they are used
        widths, heights = np.full(len(x), width), np.full(len(x), height)
        modes = np.full(len(x), {1: "L", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels}-channel"))
        stored = "arrays"
    aspect = widths / np.maximum(heights, 1)

    def spread(values: np.ndarray, digits: int = 0) -> dict:
        low, mid, high = np.min(values), np.median(values), np.max(values)
        return {k: round(float(v), digits) if digits else int(round(float(v)))
                for k, v in (("min", low), ("median", mid), ("max", high))}  # fmt: skip

    names, counts = np.unique(modes, return_counts=True)
    order = np.argsort(-counts, kind="stable")  # the commonest mode first
    small = (widths < width / 2) | (heights < height / 2)
    return {
        "stored": stored, "count": len(x), "used_at": [int(width), int(height)],
        "width": spread(widths), "height": spread(heights), "aspect": spread(aspect, 2),
        "modes": {str(names[k]): int(counts[k]) for k in order},
        "under_half_size": int(small.sum()),
    }  # fmt: skip


def describe_sizes(images: dict) -> str:
    """One line on the images of every split as stored: sizes, aspect ratios, modes."""
    parts = []
    for split, found in images.items():
        w, h, a = found["width"], found["height"], found["aspect"]
        modes = ", ".join(f"{m} {c:,}" for m, c in found["modes"].items())
        if w["min"] == w["max"] and h["min"] == h["max"]:
            text = f"{split} {found['count']:,} {found['stored']} of {w['min']}x{h['min']} {modes}"
        else:
            text = (
                f"{split} {found['count']:,} {found['stored']} of {w['min']}x{h['min']} to "
                f"{w['max']}x{h['max']} (median {w['median']}x{h['median']}, aspect "
                f"{a['min']:g} to {a['max']:g}), {modes}"
            )
        if found["under_half_size"]:
            used = "x".join(map(str, found["used_at"]))
            text += f", {found['under_half_size']:,} under half of {used}"
        parts.append(text)
    return "images: " + "; ".join(parts)


def _summary(data, a: str, b: str, pairs: np.ndarray, conflicts: list) -> dict:
    ya, yb = data.split(a)[1], data.split(b)[1]
    listed = []
    for i, j, distance in pairs.tolist():
        entry = {
            "a": data.origin(a, i), "b": data.origin(b, j),
            "distance": "exact" if distance < 0 else distance,
        }  # fmt: skip
        if ya is not None and yb is not None:
            entry["labels"] = [
                label_text(ya[i], data.class_names),
                label_text(yb[j], data.class_names),
            ]
            if np.any(ya[i] != yb[j]):
                conflicts.append({**entry, "splits": [a, b]})
        if len(listed) < LISTED:
            listed.append(entry)
    return {
        "pairs": len(pairs), "exact": int((pairs[:, 2] < 0).sum()) if len(pairs) else 0,
        "listed": listed, "index_pairs": pairs[:LISTED, :2].tolist(),
    }  # fmt: skip


def describe(record: dict) -> list[str]:
    """A few lines for the console: leaks, duplicates, conflicting labels, imbalance."""
    lines = []
    for key, found in record["leaks"].items():
        a, b = key.split("-")
        if found["pairs"]:
            first = found["listed"][0]
            lines.append(
                f"leak: {found['pairs']:,} {b} images copy {a} images ({found['exact']:,} exact), "
                f"e.g. {first['b']} ~ {first['a']}"
            )
    for split, found in record["duplicates"].items():
        if found["pairs"]:
            lines.append(
                f"duplicates in {split}: {found['pairs']:,} pairs ({found['exact']:,} exact)"
            )
    if record["conflicting_label_pairs"]:
        first = record["conflicting_labels"][0]
        lines.append(
            f"conflicting labels: {record['conflicting_label_pairs']:,} copies under two classes, "
            f"e.g. {first['a']} ({first['labels'][0]}) ~ {first['b']} ({first['labels'][1]})"
        )
    if not lines:
        lines.append("no duplicates, no copies across splits, no conflicting labels")
    if record.get("images"):  # data_health.json of older runs has no sizes
        lines.append(describe_sizes(record["images"]))
    return lines


def drop_leaked(data, record: dict) -> int:
    """Remove from the test split the images that copy a train or validation image; how many."""
    leaked = record["leaked"].get("test", [])
    if not leaked:
        return 0
    x, y = data.split("test")
    keep = np.ones(len(x), bool)
    keep[leaked] = False
    data.set_split("test", x[keep], None if y is None else y[keep])
    if "test" in data.origins:
        data.origins["test"] = data.origins["test"][keep]
    if "test" in data.originals:
        data.originals["test"] = {k: v[keep] for k, v in data.originals["test"].items()}
    return len(leaked)
