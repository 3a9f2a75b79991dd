from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from . import helpers
from .helpers import MNIST_NPZ, digits_frame, invoke


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with `subprocess` tests first, then the others, more tests first.

    Those tests mostly wait on other processes: started first, the in-process modules fill
    the waits, and the suite does not end on a long module with the other worker idle.
    pyproject.toml's `--no-loadscope-reorder` keeps this order (xdist would sort by size).
    """
    modules: dict[Path, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.path, []).append(item)

    def start_order(tests: list[pytest.Item]) -> tuple[bool, int]:
        return (not any(t.get_closest_marker("subprocess") for t in tests), -len(tests))

    items[:] = [item for tests in sorted(modules.values(), key=start_order) for item in tests]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Never read or fill the user's real cache from tests.
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def mnist_arrays():
    with np.load(MNIST_NPZ) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def kaggle_dir(tmp_path_factory, mnist_arrays) -> Path:
    """Small real Kaggle-format files: 400 labelled train rows, 50 test rows with answers."""
    root = tmp_path_factory.mktemp("kaggle")
    x, y = mnist_arrays["x_train"][:400], mnist_arrays["y_train"][:400]
    xt, yt = mnist_arrays["x_test"][:50], mnist_arrays["y_test"][:50]
    digits_frame(x, y).to_csv(root / "train.csv", index=False)
    digits_frame(xt, None).to_csv(root / "test.csv", index=False)
    digits_frame(xt, yt).to_csv(root / "test_labelled.csv", index=False)
    pd.DataFrame({"ImageId": np.arange(1, 51), "Label": yt}).to_csv(
        root / "test_labels.csv", index=False
    )
    return root


@pytest.fixture
def cli():
    return invoke


@pytest.fixture
def quick():
    """--set overrides that shrink a shipped config to a seconds-long real run."""
    return helpers.quick
