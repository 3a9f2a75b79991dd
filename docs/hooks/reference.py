"""MkDocs hook: the configuration and command references, generated where the code is the truth.

`<!-- config-reference -->` in a page becomes a table per schema (walked from the experiment's
`Config`, every loader and builder included): each key's dotted name, type, default and
`Field(description=...)`. `<!-- command-reference -->` becomes each `cnnlab` command's usage,
help and options, read from the Typer app. `bench/README.md` is added as the Benchmarks page.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from pathlib import Path
from typing import Any, NamedTuple

import annotated_types
from pydantic import AfterValidator, BaseModel, BeforeValidator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[2]


def use_checkout() -> None:
    """Document the checkout being built, whichever copy of cnnlab is installed. (MkDocs puts
    sys.path back as it was after loading a hook, so this runs when the hook is called.)"""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


CONFIG_MARK = "<!-- config-reference -->"
COMMAND_MARK = "<!-- command-reference -->"


# --- the configuration reference --------------------------------------------------------------


class Section(NamedTuple):
    """One schema's table: its keys start with `prefix`; `tag` names a union member."""

    prefix: str
    schema: type[BaseModel]
    tag: tuple[str, str] | None = None

    @property
    def anchor(self) -> str:
        parts = [self.prefix.replace("[*]", "") or "top-level"]
        if self.tag:
            parts.append(self.tag[1])
        return "-".join(parts).replace(".", "-").replace("_", "-")

    @property
    def heading(self) -> str:
        if self.tag:
            return f"`{self.tag[0]}: {self.tag[1]}`"
        return f"`{self.prefix}`" if self.prefix else "Top-level keys"


def key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def union_members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return list(typing.get_args(annotation))
    return [annotation]


def nested_schemas(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """The schemas a field's value may be, with the suffix their keys take (`[*]` in lists)."""
    found = []
    for member in union_members(annotation):
        if typing.get_origin(member) is typing.Annotated:
            member = typing.get_args(member)[0]
        if typing.get_origin(member) is list:
            found += [("[*]" + s, m) for s, m in nested_schemas(typing.get_args(member)[0])]
        elif isinstance(member, type) and issubclass(member, BaseModel):
            found.append(("", member))
    return found


def sections_of(prefix: str, schema: type[BaseModel], tag=None) -> list[Section]:
    """`schema`'s section, then those of the schemas its fields hold (each prefix once)."""
    found = [Section(prefix, schema, tag)]
    for name, field in schema.model_fields.items():
        if field.discriminator:
            continue  # a union's members are sections of their own (see config_sections)
        for suffix, nested in nested_schemas(field.annotation):
            found += sections_of(key(prefix, name) + suffix, nested)
    unique, seen = [], set()
    for section in found:
        if (section.prefix, section.schema, section.tag) not in seen:
            seen.add((section.prefix, section.schema, section.tag))
            unique.append(section)
    return unique


def config_sections() -> list[tuple[str, list[Section]]]:
    """The reference's groups: the top-level keys, then one group per section of the config."""
    use_checkout()
    from cnnlab.config import Config

    groups = [("", [Section("", Config)])]
    for name, field in Config.model_fields.items():
        members = [m for _, m in nested_schemas(field.annotation)]
        if field.discriminator:
            tag = field.discriminator
            sections = []
            for member in members:
                (value,) = typing.get_args(member.model_fields[tag].annotation)
                sections += sections_of(name, member, (f"{name}.{tag}", value))
            groups.append((name, dedupe(sections)))
        elif members:
            groups.append((name, sections_of(name, members[0])))
    return groups


def dedupe(sections: list[Section]) -> list[Section]:
    """Union members first, then the nested sections they share, each once."""
    members = [s for s in sections if s.tag]
    nested, seen = [], set()
    for s in sections:
        if not s.tag and (s.prefix, s.schema) not in seen:
            seen.add((s.prefix, s.schema))
            nested.append(s)
    return members + nested


def group(name: str) -> tuple[str, str]:
    return GROUPS.get(name, (f"`{name}`", f"{name}-keys"))


def yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, BaseModel):
        return yaml_value(value.model_dump())
    return str(value)


def constraint_text(metadata: list[Any]) -> str:
    """`in [0, 1)`, `≥ 1`, `of at least 2`, `matching ...` from a type's constraints."""
    flat = []
    for m in metadata:
        flat += m.metadata if isinstance(m, FieldInfo) else [m]
    metadata = flat
    bounds = {type(m).__name__: m for m in metadata if isinstance(m, annotated_types.BaseMetadata)}
    low = bounds.get("Ge") or bounds.get("Gt")
    high = bounds.get("Le") or bounds.get("Lt")
    words = []
    if low is not None and high is not None:
        left = "[" if "Ge" in bounds else "("
        right = "]" if "Le" in bounds else ")"
        lo = getattr(low, "ge", getattr(low, "gt", None))
        hi = getattr(high, "le", getattr(high, "lt", None))
        words.append(f"in {left}{lo}, {hi}{right}")
    elif low is not None:
        words.append(f"≥ {low.ge}" if "Ge" in bounds else f"> {low.gt}")
    elif high is not None:
        words.append(f"≤ {high.le}" if "Le" in bounds else f"< {high.lt}")
    if "MinLen" in bounds:
        words.append(f"of at least {bounds['MinLen'].min_length}")
    for m in metadata:
        pattern = getattr(m, "pattern", None)
        if isinstance(pattern, str):
            words.append(f"matching `{pattern}`")
    return " ".join(w for w in words if w)


def validator_names(metadata: list[Any]) -> set[str]:
    return {m.func.__name__ for m in metadata if isinstance(m, AfterValidator | BeforeValidator)}


PATH_KINDS = {
    "_existing_file": "path of a file",
    "_existing_dir": "path of a folder",
    "_existing": "path",
    "_resolved": "path",
}
SCALARS = {int: "int", float: "float", str: "string", bool: "bool"}
# The reference's groups, by the top-level key they document: heading and anchor.
GROUPS = {
    "": ("The top level", "top"),
    "data": ("Data loaders", "data-loaders"),
    "model": ("Model builders", "model-builders"),
    "train": ("Training", "training"),
    "tracking": ("Tracking", "tracking-keys"),
}


def type_text(annotation: Any, metadata: list[Any] | None = None) -> str:
    """A field's type in words: `float in (0, 1)`, `list of int ≥ 1`, `adam`, `sgd` or null."""
    metadata = list(metadata or [])
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        inner, *more = typing.get_args(annotation)
        return type_text(inner, metadata + more)
    if origin in (typing.Union, types.UnionType):
        parts = [type_text(a) for a in typing.get_args(annotation) if a is not type(None)]
        if type(None) in typing.get_args(annotation):
            parts.append("null")
        return ", ".join(parts[:-1]) + " or " + parts[-1]
    if origin is typing.Literal:
        values = [f"`{yaml_value(v)}`" for v in typing.get_args(annotation)]
        return ", ".join(values)
    if origin is list:
        (item,) = typing.get_args(annotation)
        text = f"list of {type_text(item)}"
    elif origin is tuple:
        text = "[" + ", ".join(type_text(a) for a in typing.get_args(annotation)) + "]"
    elif origin is dict:
        k, v = typing.get_args(annotation)
        text = f"{{{type_text(k)}: {type_text(v)}}}"
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        text = "mapping"
    elif annotation is Path:
        kinds = [PATH_KINDS[n] for n in validator_names(metadata) if n in PATH_KINDS]
        text = kinds[0] if kinds else "path"
    elif "duration_seconds" in validator_names(metadata):
        text = "duration (`20m`, `1h30m`, `90s` or seconds)"
    else:
        text = SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)))
    bounds = constraint_text(metadata)
    if bounds.startswith("of at least 1"):  # a list or string's MinLen(1)
        text, bounds = f"non-empty {text}", bounds.removeprefix("of at least 1").strip()
    return f"{text} {bounds}" if bounds else text


def field_type(field) -> str:
    if field.discriminator:
        return "mapping"
    return type_text(field.annotation, field.metadata)


def default_text(section: Section, name: str, field) -> str:
    from cnnlab.config import PHASE_KEYS, PhaseConfig

    if section.schema is PhaseConfig and name in PHASE_KEYS:
        parent = section.prefix.removesuffix(".phases[*]")
        return f"`{parent}.{name}`"  # a phase's key left out is train's (TrainConfig)
    if field.default_factory is not None:
        return "see description"
    if field.default is PydanticUndefined:
        return "required"
    value = field.default
    if isinstance(value, BaseModel):
        text = yaml_value(value)
        return f"`{text}`" if len(text) <= 40 else "the defaults of its keys"
    return f"`{yaml_value(value)}`"


def shown(text: str) -> str:
    """`<` outside code spans escaped, so that `<name>` shows rather than passing for HTML."""
    parts = text.split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;") for i, p in enumerate(parts))


def cell(text: str) -> str:
    """Text for one table cell: one line, pipes escaped."""
    return shown(" ".join(text.split()).replace("|", "\\|"))


def schema_doc(schema: type[BaseModel]) -> str:
    doc = schema.__doc__
    if not doc or schema.__doc__ == BaseModel.__doc__:
        return ""
    return shown(inspect.cleandoc(doc))


def section_markdown(section: Section, anchors: dict[str, str]) -> list[str]:
    lines = [f"#### {section.heading} {{#{section.anchor}}}", ""]
    doc = schema_doc(section.schema)
    if doc:
        lines += [doc, ""]
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    fields = section.schema.model_fields
    # A union member's table starts with the key that picks it.
    first = [section.tag[0].rsplit(".", 1)[1]] if section.tag else []
    for name in first + [n for n in fields if n not in first]:
        field = fields[name]
        dotted = key(section.prefix, name)
        kind = field_type(field)
        nested = [key(section.prefix, name) + s for s, _ in nested_schemas(field.annotation)]
        links = [f"[`{p}`](#{anchors[p]})" for p in nested if p in anchors]
        if field.discriminator:
            title, anchor = group(name)
            links = [f"[{title.lower()}](#{anchor})"]
        if links:
            kind = f"{kind}: see {', '.join(links)}"
        row = [f"`{dotted}`", kind, default_text(section, name, field), field.description or ""]
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    return lines + [""]


def config_reference() -> str:
    """The configuration reference as Markdown: a table per schema, grouped by section."""
    groups = config_sections()
    anchors: dict[str, str] = {}
    for _, sections in groups:
        for s in sections:
            anchors.setdefault(s.prefix, s.anchor)
    lines = []
    for name, sections in groups:
        title, anchor = group(name)
        lines += [f"### {title} {{#{anchor}}}", ""]
        members = [s for s in sections if s.tag]
        if members:
            lines += [f"`{members[0].tag[0]}` picks one:", ""]
            lines += [f"| `{members[0].tag[0]}` | what it is |", "| --- | --- |"]
            for s in members:
                summary = schema_doc(s.schema).split("\n\n")[0]
                lines.append(f"| [`{s.tag[1]}`](#{s.anchor}) | {cell(summary)} |")
            lines.append("")
        for s in sections:
            lines += section_markdown(s, anchors)
    return "\n".join(lines)


# --- the command reference ----------------------------------------------------------------------


def commands(parent, context, path: str):
    """(path, command, its context) for every command under `parent`, depth first."""
    for name in parent.list_commands(context):
        command = parent.get_command(context, name)
        if command is None or getattr(command, "hidden", False):
            continue
        sub = command.make_context(name, [], parent=context, resilient_parsing=True)
        yield f"{path} {name}", command, sub
        if hasattr(command, "list_commands"):
            yield from commands(command, sub, f"{path} {name}")


def options_table(command, context) -> list[str]:
    rows = []
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        record = param.get_help_record(context) or (param.human_readable_name, "")
        rows.append(f"| {cell(f'`{record[0]}`')} | {cell(record[1])} |")
    if not rows:
        return []
    return ["| argument or option | what it does |", "| --- | --- |", *rows, ""]


def command_reference() -> str:
    """Every `cnnlab` command's usage, help and options, as the app defines them."""
    import typer

    use_checkout()
    from cnnlab.cli import app

    root = typer.main.get_command(app)
    context = root.make_context("cnnlab", [], resilient_parsing=True)
    lines = ["## `cnnlab`", "", shown(inspect.cleandoc(root.help or "")), ""]
    lines += ["```text", root.get_usage(context).removeprefix("Usage: "), "```", ""]
    lines += options_table(root, context)
    for path, command, sub in commands(root, context, "cnnlab"):
        anchor = path.replace(" ", "-")
        lines += [f"## `{path}` {{#{anchor}}}", ""]
        lines += ["```text", command.get_usage(sub).removeprefix("Usage: "), "```", ""]
        lines += [shown(inspect.cleandoc(command.help or "")), ""]
        lines += options_table(command, sub)
    return "\n".join(lines)


# --- MkDocs events ------------------------------------------------------------------------------


def on_files(files, config):
    from mkdocs.structure.files import File

    files.append(
        File.generated(config, "benchmarks.md", abs_src_path=str(ROOT / "bench" / "README.md"))
    )
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if CONFIG_MARK in markdown:
        markdown = markdown.replace(CONFIG_MARK, config_reference())
    if COMMAND_MARK in markdown:
        markdown = markdown.replace(COMMAND_MARK, command_reference())
    return markdown
