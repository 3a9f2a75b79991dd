"""The generated documentation: every config key described and listed, every command listed."""

from __future__ import annotations

import importlib.util
import re
import typing

import typer
from pydantic import BaseModel

from cnnlab.cli import app
from cnnlab.config import DATA_SCHEMAS, MODEL_SCHEMAS, Config

from .helpers import ROOT


def reference_hook():
    """docs/hooks/reference.py, the MkDocs hook that writes the references."""
    path = ROOT / "docs" / "hooks" / "reference.py"
    spec = importlib.util.spec_from_file_location("docs_reference_hook", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def schemas_in(annotation) -> list[tuple[str, type[BaseModel]]]:
    """The schemas a field's type holds, each with `[*]` per list it sits in."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    in_list = typing.get_origin(annotation) is list
    found = []
    for arg in typing.get_args(annotation):
        found += [(("[*]" if in_list else "") + s, m) for s, m in schemas_in(arg)]
    return found


def reachable(schema=Config, prefix: str = "") -> list[tuple[str, type[BaseModel]]]:
    """(key prefix, schema) for the experiment config and every schema under it, discriminated
    unions' members included."""
    found = [(prefix, schema)]
    for name, field in schema.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        for suffix, nested in schemas_in(field.annotation):
            found += reachable(nested, key + suffix)
    return found


def test_every_config_field_has_a_description():
    schemas = {schema for _, schema in reachable()}
    # The walk reaches every loader and builder through the discriminated unions.
    assert set(DATA_SCHEMAS.values()) | set(MODEL_SCHEMAS.values()) <= schemas
    missing = [
        f"{schema.__name__}.{name}"
        for schema in sorted(schemas, key=lambda s: s.__name__)
        for name, field in schema.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert not missing, f"fields without Field(description=...): {missing}"


def test_config_reference_lists_every_key_in_its_section():
    markdown = reference_hook().config_reference()
    sections = re.split(r"^#+ .*$", markdown, flags=re.M)
    listed = {frozenset(re.findall(r"^\| `([^`]+)` \|", body, flags=re.M)) for body in sections}
    for prefix, schema in reachable():
        keys = frozenset(f"{prefix}.{n}" if prefix else n for n in schema.model_fields)
        assert keys in listed, f"no section lists {schema.__name__}'s keys: {sorted(keys)}"
    every_key = {k for prefix, schema in reachable() for k in schema.model_fields}
    assert every_key <= {k.rsplit(".", 1)[-1] for keys in listed for k in keys}


def test_config_reference_shows_types_defaults_and_descriptions():
    markdown = reference_hook().config_reference()
    row = re.search(r"^\| `train.learning_rate` \|.*$", markdown, flags=re.M).group(0)
    assert "float > 0" in row and "`0.001`" in row
    assert Config.model_fields["seed"].description in markdown
    # A phase's key left out is train's, and the reference says so.
    assert re.search(r"^\| `train.phases\[\*\].epochs` \| .* \| `train.epochs` \|", markdown, re.M)


def commands(group=None, path=("cnnlab",)):
    """(path, command) of every command of the app, groups and their members."""
    group = group or typer.main.get_command(app)
    for name, command in group.commands.items():
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))


def test_command_reference_lists_every_command_and_option():
    markdown = reference_hook().command_reference()
    for path, command in commands():
        assert f"## `{' '.join(path)}`" in markdown
        for param in command.params:
            for opt in [o for o in param.opts + param.secondary_opts if o.startswith("-")]:
                assert opt in markdown, f"{' '.join(path)} {opt}"
    assert "--debug" in markdown
