"""Competition-shaped folders made from Kaggle's Dogs vs. Cats photos, with answers kept aside.

    python bench/kaggle_shapes.py DOGS_VS_CATS_TRAIN_DIR OUT_DIR [--test 2000] [--seed 0]

DOGS_VS_CATS_TRAIN_DIR is the flat `train/` folder (`cat.N.jpg`, `dog.N.jpg`; the shared data's
`dogs-vs-cats-train-200px.tar` unpacks to one). OUT_DIR receives three competitions, each with
its training data, an unlabelled test folder, a sample submission and the answers for it
(`cnnlab data score` takes them):

    dogs_vs_cats/  train/ (flat, cat.N.jpg and dog.N.jpg), test1/ (1.jpg ...),
                   sampleSubmission.csv (id,label of 0), answers.csv (id,label: 1 = dog)
    redux/         the same photos; sample_submission.csv of label 0.5 (a probability of dog)
    label_csv/     train/ (flat, hex ids) + train.csv (id,has_dog), test/ + sample_submission.csv
                   (id,has_dog of 0.5), answers.csv (Aerial Cactus' and Histopathologic
                   Cancer's shape)
    tags/          train-jpg/ + train_v2.csv (image_name,tags), test-jpg/ + sample_submission.csv
                   (image_name,tags), answers.csv (Planet's shape): each image one or two
                   photos side by side, tagged `cat` and/or `dog` by what they show and `bw`
                   when they were turned black and white

The photos of the test folders are never among the training ones.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import shutil
from pathlib import Path

from PIL import Image, ImageOps

NAME = re.compile(r"^(cat|dog)\.\d+\.jpe?g$", re.IGNORECASE)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _mosaic(photos: list[Path], bw: bool) -> Image.Image:
    """The photos side by side at 160 pixels high (one photo: on its own), black and white
    when `bw`."""
    parts = [Image.open(p).convert("RGB").resize((160, 160)) for p in photos]
    out = Image.new("RGB", (160 * len(parts), 160))
    for i, part in enumerate(parts):
        out.paste(part, (160 * i, 0))
    return ImageOps.grayscale(out).convert("RGB") if bw else out


def make(source: Path, out: Path, test: int, seed: int) -> None:
    photos = sorted(p for p in source.iterdir() if NAME.match(p.name))
    rng = random.Random(seed)
    rng.shuffle(photos)
    train, held = photos[test:], photos[:test]
    is_dog = {p: p.name.lower().startswith("dog") for p in photos}

    # Dogs vs. Cats and its Redux: the flat train/ as Kaggle gives it, test1/ numbered.
    for name, sample_value in (("dogs_vs_cats", "0"), ("redux", "0.5")):
        root = out / name
        (root / "train").mkdir(parents=True)
        (root / "test1").mkdir()
        for p in train:
            shutil.copy2(p, root / "train" / p.name)
        for i, p in enumerate(held, 1):
            shutil.copy2(p, root / "test1" / f"{i}.jpg")
        sample = "sampleSubmission.csv" if name == "dogs_vs_cats" else "sample_submission.csv"
        ids = list(range(1, len(held) + 1))
        _write_csv(root / sample, ["id", "label"], [[i, sample_value] for i in ids])
        _write_csv(
            root / "answers.csv",
            ["id", "label"],
            [[i, int(is_dog[p])] for i, p in zip(ids, held, strict=True)],
        )

    # One label column: hex ids with their extension in a flat folder and a train.csv.
    root = out / "label_csv"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    rows = []
    for p in train:
        ident = f"{rng.getrandbits(48):012x}"
        shutil.copy2(p, root / "train" / f"{ident}.jpg")
        rows.append([f"{ident}.jpg", int(is_dog[p])])
    _write_csv(root / "train.csv", ["id", "has_dog"], rows)
    test_rows = []
    for p in held:
        ident = f"{rng.getrandbits(48):012x}"
        shutil.copy2(p, root / "test" / f"{ident}.jpg")
        test_rows.append([f"{ident}.jpg", int(is_dog[p])])
    _write_csv(
        root / "sample_submission.csv", ["id", "has_dog"], [[i, "0.5"] for i, _ in test_rows]
    )
    _write_csv(root / "answers.csv", ["id", "has_dog"], test_rows)

    # Tags: one or two photos side by side, tagged by what they show.
    root = out / "tags"
    for split, pool, folder, table in (
        ("train", train, "train-jpg", "train_v2.csv"),
        ("test", held, "test-jpg", "answers.csv"),
    ):
        (root / folder).mkdir(parents=True)
        rows = []
        pool = list(pool)
        for i in range(0, len(pool) - 1, 3):
            # Of each three photos, one image of one and one of two: each photo used once.
            for group in ([pool[i]], [pool[i + 1], pool[i + 2]] if i + 2 < len(pool) else []):
                if not group:
                    continue
                bw = rng.random() < 0.3
                name = f"{split}_{len(rows)}"
                _mosaic(group, bw).save(root / folder / f"{name}.jpg", quality=90)
                tags = sorted(
                    {"dog" if is_dog[p] else "cat" for p in group} | ({"bw"} if bw else set())
                )
                rows.append([name, " ".join(tags)])
        _write_csv(root / table, ["image_name", "tags"], rows)
        if split == "test":
            _write_csv(
                root / "sample_submission.csv",
                ["image_name", "tags"],
                [[n, "cat dog"] for n, _ in rows],
            )
    print(f"wrote {out}: {len(train):,} training photos, {len(held):,} test photos")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out}: already exists; choose a new folder")
    make(args.source, args.out, args.test, args.seed)


if __name__ == "__main__":
    main()
