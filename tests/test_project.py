"""The project's promises about itself: the quick start, CI and lint settings agree."""

from __future__ import annotations

import re

from .helpers import ROOT


def quick_start() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return block.strip().splitlines()


def test_quick_start_is_two_commands_and_ci_runs_the_second():
    install_and_train, install_and_test = quick_start()
    assert "cnnlab train configs/" in install_and_train
    config = install_and_train.split("cnnlab train ", 1)[1].strip()
    assert (ROOT / config).is_file()
    ci = (ROOT / ".ci" / "run").read_text()
    assert install_and_test.replace("pip install -e", "python -m pip install -q -e") in ci


def test_default_suite_excludes_slow_tests():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "--strict-markers -m 'not slow'" in pyproject
