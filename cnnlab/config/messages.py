"""Turning pydantic's validation errors into one line each: file:line, key, what was received,
and a "did you mean" where a close name exists."""

from __future__ import annotations

import difflib
import re
import reprlib
import typing
from typing import Any

from pydantic import BaseModel

from cnnlab.config.data import DATA_SCHEMAS
from cnnlab.config.models import MODEL_SCHEMAS

Key = tuple[str | int, ...]


# A received value is quoted this far: a list of 100,000 items (aliases make one from a few
# lines) is shown by its start, not printed whole.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 2, 60, 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 4


def shown(value: Any) -> str:
    """`repr(value)`, shortened: nested containers and long strings end in '...'."""
    return _SHORT.repr(value)


def dotted(path: Key) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _data_path(loc: tuple, data: Any) -> Key:
    """Map pydantic's error location onto keys of the user's YAML (dropping union tags)."""
    out: list[str | int] = []
    cur = data
    for item in loc:
        if isinstance(cur, dict) and item in cur:
            out.append(item)
            cur = cur[item]
        elif isinstance(cur, list) and isinstance(item, int) and item < len(cur):
            out.append(item)
            cur = cur[item]
        elif isinstance(cur, dict) and item in (cur.get("loader"), cur.get("builder")):
            continue  # pydantic names the chosen union member; the YAML has no such key
        else:
            out.append(item)
            cur = None
    return tuple(out)


def _where(path: Key, lines: dict[Key, str], source: str) -> str:
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return source


def _schema_at(path: Key, data: Any, root: type[BaseModel]) -> type[BaseModel] | None:
    """The schema class that validates the mapping at `path`, if there is one."""
    cls = root
    cur = data
    for key in path:
        field = cls.model_fields.get(key) if isinstance(key, str) else None
        if field is None:
            return None
        cur = cur.get(key) if isinstance(cur, dict) else None
        found = _model_class(field.annotation, cur)
        if found is None:
            return None
        cls = found
    return cls


def _model_class(annotation: Any, value: Any) -> type[BaseModel] | None:
    candidates: list[type[BaseModel]] = []
    stack = [annotation]
    while stack:
        a = stack.pop()
        if isinstance(a, type) and issubclass(a, BaseModel):
            candidates.append(a)
        else:
            stack.extend(typing.get_args(a))
    if len(candidates) == 1:
        return candidates[0]
    if isinstance(value, dict):
        for schemas, tag in ((DATA_SCHEMAS, "loader"), (MODEL_SCHEMAS, "builder")):
            if value.get(tag) in schemas and schemas[value[tag]] in candidates:
                return schemas[value[tag]]
    return None


def _suggest(word: Any, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def describe(
    err: dict, data: dict, lines: dict[Key, str], source: str, root: type[BaseModel]
) -> str:
    """One line for one pydantic error of validating `data` (read from `source`) as `root`."""
    path = _data_path(err["loc"], data)
    where = _where(path, lines, source)
    key = dotted(path)
    kind = err["type"]
    ctx = err.get("ctx", {})
    given = err.get("input")
    if kind == "extra_forbidden":
        schema = _schema_at(path[:-1], data, root)
        valid = list(schema.model_fields) if schema else []
        hint = _suggest(path[-1], valid) or (f"; valid keys: {', '.join(valid)}" if valid else "")
        return f"{where}: unknown key '{key}'{hint}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = ctx.get("discriminator", "").strip("'")
        choices = sorted(DATA_SCHEMAS if tag == "loader" else MODEL_SCHEMAS)
        listed = ", ".join(choices)
        if kind == "union_tag_not_found":
            return f"{where}: '{key}' needs a '{tag}' key; choose one of: {listed}"
        chosen = ctx.get("tag")
        hint = _suggest(chosen, choices)
        at = _where((*path, tag), lines, source)
        return f"{at}: unknown {tag} '{chosen}' at '{key}.{tag}'{hint} (choose one of: {listed})"
    if kind == "missing":
        return f"{where}: missing required key '{key}'"
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        choices = re.findall(r"'([^']*)'", expected)
        hint = _suggest(given, choices) if isinstance(given, str) else ""
        return f"{where}: {key}: {shown(given)} is not one of {expected}{hint}"
    msg = err["msg"].removeprefix("Value error, ")
    if not path:
        # Checks across sections start with the key they are about: point at its line.
        named = re.match(r"([A-Za-z_][\w]*(?:\.\w+)+)", msg)
        if named:
            parts = tuple(int(p) if p.isdigit() else p for p in named.group(1).split("."))
            return f"{_where(parts, lines, source)}: {msg}"
    if kind == "path_type":
        msg = "expected a file path"
    if kind.endswith("_type") or kind.endswith("_parsing") or kind.endswith("_strict"):
        got = "null" if given is None else f"{type(given).__name__} {shown(given)}"
        return f"{where}: {key}: {msg}; got {got}"
    return f"{where}: {key}: {msg}"
