"""The layers of pyproject.toml's import-linter contract hold, and a planted import against
them (an upward one, hidden in a function; a cycle inside a package) breaks the check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import ROOT

LINT_IMPORTS = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the cnnlab package under `root`, as `root`'s pyproject.toml says."""
    # PYTHONPATH first, so that the package analysed is the one under `root`, not the one
    # pip installed.
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS, "--no-cache"],
        cwd=root, env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_the_package_keeps_its_layers_and_has_no_cycles():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "named"),
    [
        # Upward, inside a function: the lowest layer reaching the highest.
        ("utils/console.py", "from cnnlab.cli import app", "cnnlab.utils.console -> cnnlab.cli"),
        # Between siblings of one layer, which are independent.
        (
            "reports/page.py",
            "from cnnlab.inference import scores",
            "cnnlab.reports.page -> cnnlab.inference",
        ),
        # A cycle inside a package: image_dir already imports images.
        ("data/images.py", "from cnnlab.data import image_dir", ".images -> .image_dir"),
    ],
)
def test_a_planted_import_breaks_the_contract_and_is_named(tmp_path, module, planted, named):
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "cnnlab", copy / "cnnlab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy)
    target = copy / "cnnlab" / module
    target.write_text(target.read_text() + f"\n\ndef _planted():\n    {planted}\n")
    result = lint_imports(copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout and named in result.stdout
