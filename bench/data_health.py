"""Data health on real photos: how long fingerprinting and the copy search take, and the recall
and precision of the search on copies planted across splits.

    python bench/data_health.py PHOTO_FOLDER [--train 45000] [--planted 200] [--size 32]

PHOTO_FOLDER: images searched recursively (e.g. the CIFAR-10 training JPEGs). The first
`--train` (shuffled, seed 0) are the training split, the rest the test split; `--planted`
training photos are altered (a quarter each: re-encoded as JPEG quality 60, resized to 1.5x,
cropped by 1/32 of a side all round, brightened by 25%), decoded at `--size` as a loader would,
and added to the test split. Recall: the planted copies found; precision: the planted copies
among all train-test pairs found (pairs of the photos as given count against it, though some
are true copies).
"""

from __future__ import annotations

import argparse
import io
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnlab.data.health import close_pairs, fingerprints  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--train", type=int, default=45000)
    parser.add_argument("--planted", type=int, default=200)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    files = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    rng = np.random.default_rng(0)
    rng.shuffle(files)
    size = (args.size, args.size)

    def load(image: Image.Image) -> np.ndarray:
        return np.asarray(image.convert("RGB").resize(size, Image.Resampling.BILINEAR))

    train = np.stack([load(Image.open(f)) for f in files[: args.train]])
    test = [load(Image.open(f)) for f in files[args.train :]]
    planted = []
    for n, k in enumerate(rng.choice(len(train), args.planted, replace=False)):
        image = Image.open(files[k]).convert("RGB")
        w, h = image.size
        kind = n % 4
        if kind == 0:
            out = io.BytesIO()
            image.save(out, "JPEG", quality=60)
            copy = Image.open(out)
        elif kind == 1:
            copy = image.resize((w * 3 // 2, h * 3 // 2))
        elif kind == 2:
            copy = image.crop((w // 32, h // 32, w - w // 32, h - h // 32))
        else:
            copy = ImageEnhance.Brightness(image).enhance(1.25)
        planted.append((int(k), len(test), kind))
        test.append(load(copy))
    test = np.stack(test)
    begin = time.perf_counter()
    a, b = fingerprints(train), fingerprints(test)
    hashed = time.perf_counter()
    within = close_pairs(a)
    across = close_pairs(a, b)
    done = time.perf_counter()
    # Again, traced (which slows it), for what the health step itself allocates, photos aside.
    del a, b
    tracemalloc.start()
    a, b = fingerprints(train), fingerprints(test)
    close_pairs(a)
    close_pairs(a, b)
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    found = {(int(i), int(j)) for i, j, _ in across}
    hits = [p for p in planted if (p[0], p[1]) in found]
    kinds = ["re-encoded", "resized", "cropped", "brightened"]
    print(f"{len(train):,} train and {len(test):,} test images of {args.size}x{args.size}")
    print(f"fingerprints {hashed - begin:.1f} s, search {done - hashed:.1f} s, "
          f"in all {done - begin:.1f} s")  # fmt: skip
    print(f"pairs within train {len(within):,}, across {len(across):,}")
    print(f"recall {len(hits) / len(planted):.3f} ({len(hits)}/{len(planted)}), precision "
          f"{len(hits) / max(len(across), 1):.3f}")  # fmt: skip
    for kind, name in enumerate(kinds):
        count = sum(1 for p in planted if p[2] == kind)
        print(f"  {name}: {sum(1 for p in hits if p[2] == kind)}/{count}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of fingerprints and search {traced:,.0f} MiB (traced allocations); "
          f"peak resident memory {peak:,.0f} MiB (the decoded photos included)")  # fmt: skip


if __name__ == "__main__":
    main()
