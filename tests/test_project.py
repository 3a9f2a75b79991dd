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


def readme_command_paths() -> list[list[str]]:
    """The words of each `cnnlab ...` in the README's command table, options and arguments
    left out: ["train"], ["data", "score"], ..."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `cnnlab ([^`]+)` \|", section, re.M)
    return [[w for w in row.split() if re.fullmatch(r"[a-z][a-z-]*", w)] for row in rows]


def test_readme_commands_exist_and_every_command_is_listed():
    import typer

    from cnnlab.cli import app

    root = typer.main.get_command(app)
    listed = set()
    for words in readme_command_paths():
        command, path = root, []
        for word in words:
            if not hasattr(command, "commands") or word not in command.commands:
                break
            command, path = command.commands[word], [*path, word]
        assert path and not hasattr(command, "commands"), f"no command cnnlab {' '.join(words)}"
        listed.add(" ".join(path))
    commands = {
        f"{name} {sub}" if hasattr(c, "commands") else name
        for name, c in root.commands.items()
        for sub in (c.commands if hasattr(c, "commands") else [None])
    }
    assert commands == listed


def test_readme_is_a_short_front_door_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 250
    assert max(len(line) for line in lines) <= 300
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), target
    # The bundled MNIST's licence travels with the package's front page.
    assert "CC BY-SA 3.0" in readme and "LeCun" in readme


def test_docs_pages_are_in_the_site_and_lines_stay_readable():
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = [next(iter(entry.values())) for entry in config["nav"]]
    generated = {"benchmarks.md"}  # bench/README.md, added by docs/hooks/reference.py
    on_disk = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert set(pages) == on_disk | generated
    for path in [
        *(ROOT / "docs").glob("*.md"),
        ROOT / "bench" / "README.md",
        ROOT / "CONTRIBUTING.md",
    ]:
        assert max(len(line) for line in path.read_text().splitlines()) <= 300, path
