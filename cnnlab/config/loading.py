"""Reading configs: YAML with line numbers, duplicate-key detection and YAML 1.2 floats, `--set`
overrides, and validation whose errors name the file, line and key."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cnnlab.config.experiment import Config
from cnnlab.config.messages import Key, describe, dotted
from cnnlab.utils.errors import ConfigError

# A config holds a few hundred values. These bounds refuse a "billion laughs" document (a few
# hundred bytes whose aliases repeat anchors into billions of values) while it is composed, before
# anything walks its expansion: sizes are added up per node, so an alias costs nothing to count.
MAX_BYTES = 1_000_000
MAX_VALUES = 100_000  # keys, values and list items, with every alias counted as what it repeats
MAX_DEPTH = 64  # levels of nesting, aliases expanded


class _TooLarge(yaml.YAMLError):
    """A document over MAX_VALUES or MAX_DEPTH, or an alias inside its own anchor."""

    def __init__(self, problem: str, mark: yaml.Mark):
        super().__init__(problem)
        self.problem, self.mark = problem, mark


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float (YAML 1.1 insists on a dot), and refuses a
    document that would expand past MAX_VALUES values or MAX_DEPTH levels."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._expanded: dict[yaml.Node, tuple[int, int]] = {}  # node -> (values, depth)
        self._composed = 0  # nodes written out in the text
        self._open = 0  # nodes being composed: the nesting of the text

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if node not in self._expanded:  # its anchor's node is still open: an ancestor
                raise _TooLarge(
                    f"alias *{event.anchor} repeats a value that contains it (a loop)",
                    event.start_mark,
                )
            return node
        self._composed += 1
        self._open += 1
        if self._composed > MAX_VALUES:
            raise _TooLarge(
                f"more than {MAX_VALUES:,} values; a config holds a few hundred", event.start_mark
            )
        if self._open > MAX_DEPTH:
            raise _TooLarge(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        node = super().compose_node(parent, index)
        self._open -= 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        values = 1 + sum(self._expanded[c][0] for c in children)
        depth = 1 + max((self._expanded[c][1] for c in children), default=0)
        if values > MAX_VALUES or depth > MAX_DEPTH:
            what = f"'&{event.anchor}'" if event.anchor else "this value"
            grows = (
                f"{values:,} values, more than the {MAX_VALUES:,} a config may hold"
                if values > MAX_VALUES
                else f"{depth} levels deep, more than {MAX_DEPTH}"
            )
            raise _TooLarge(f"{what} expands through its aliases to {grows}", node.start_mark)
        self._expanded[node] = (values, depth)
        return node


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _index(
    node: yaml.Node, path: Key, lines: dict[Key, str], source: str, seen: set[yaml.Node]
) -> None:
    """Record where each key is defined; refuse duplicate keys (PyYAML keeps the last silently).

    Each node is walked once: an alias repeats a node already indexed where its anchor is, and
    keys inside it are reported at the alias's key.
    """
    if node in seen:
        return
    seen.add(node)
    if isinstance(node, yaml.MappingNode):
        found: dict[Any, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(
                    f"{source}:{line}: a key under '{dotted(path)}' is a list or mapping; "
                    "keys are names"
                )
            key = key_node.value
            if key in found:
                raise ConfigError(
                    f"{source}:{line}: duplicate key '{dotted((*path, key))}' "
                    f"(first set on line {found[key]})"
                )
            found[key] = line
            lines[(*path, key)] = f"{source}:{line}"
            _index(value_node, (*path, key), lines, source, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = f"{source}:{item.start_mark.line + 1}"
            _index(item, (*path, i), lines, source, seen)


def _parse_yaml(text: str, source: str, lines: dict[Key, str]) -> Any:
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source}: over {MAX_BYTES:,} bytes, too large for a config")
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        _index(node, (), lines, source, set())
        return loader.construct_document(node)
    except _TooLarge as e:
        raise ConfigError(f"{source}:{e.mark.line + 1}: {e.problem}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = " ".join(str(p) for p in (e.context, e.problem) if p)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: invalid YAML: {e}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _apply_override(data: dict, item: str, lines: dict[Key, str]) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item}: expected KEY.PATH=VALUE, e.g. --set train.epochs=3")
    # Messages name the override as given, unless it is long or spans lines.
    source = f"--set {item}" if len(item) <= 100 and "\n" not in item else f"--set {key}=..."
    value = _parse_yaml(raw, source, {}) if raw.strip() else None
    parts: list[str | int] = list(key.strip().split("."))
    node: Any = data
    for i, part in enumerate(parts):
        if isinstance(node, list):
            # A list entry by position: train.phases.1.unfreeze=4
            if not (isinstance(part, str) and part.isdigit() and int(part) < len(node)):
                raise ConfigError(
                    f"{source}: '{'.'.join(map(str, parts[:i]))}' has {len(node)} entries; "
                    f"'{part}' is not one of their positions 0-{len(node) - 1}"
                )
            parts[i] = part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"{source}: '{'.'.join(map(str, parts[:i]))}' is not a mapping")
        if i == len(parts) - 1:
            node[part] = value
        else:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
    lines[tuple(parts)] = source


def override_items(overrides: Mapping[str, Any] | Sequence[str] | None) -> list[str]:
    """`key.path=value` strings, as `--set` takes them, from a mapping of keys to values (each
    value written as JSON, which YAML reads back as the same value) or from such strings."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides]
    if isinstance(overrides, Mapping):
        return [f"{key}={json.dumps(value, default=str)}" for key, value in overrides.items()]
    return [str(item) for item in overrides]


def read_yaml_mapping(path: Path, what: str, example: str) -> tuple[dict, dict[Key, str]]:
    """A YAML file whose top level is a mapping, and where each key is defined ("file:line").

    Raises:
        ConfigError: a missing or unreadable file, invalid YAML, duplicate keys, or a top
            level that is not a mapping (`example` shows the keys expected there).
    """
    source = str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)  # no further: a huge file is refused unread
        if len(raw) > MAX_BYTES:
            raise ConfigError(f"{source}: over {MAX_BYTES:,} bytes, too large for a {what}")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{source}: cannot read {what}: {e}") from None
    lines: dict[Key, str] = {}
    data = _parse_yaml(text, source, lines)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: the top level must be a mapping ({example})")
    return data, lines


def load_config(
    path: str | Path | Mapping[str, Any],
    overrides: list[str] | tuple[str, ...] = (),
    need_data: bool = True,
) -> Config:
    """Read, override and validate an experiment config.

    Args:
        path: the YAML file, or the config itself as a mapping (as the YAML would read; its
            name defaults to "experiment").
        overrides: `key.path=value` strings; values are parsed as YAML.
        need_data: whether the data files it names must exist (False: only the shapes and
            classes the config states are used, as by `cnnlab summary`).

    Returns:
        The validated config with `name` filled in (the file's stem by default) and paths absolute.

    Raises:
        ConfigError: one line per problem, each naming the file and line (or --set) and the key.
    """
    lines: dict[Key, str]
    if isinstance(path, Mapping):
        source, lines = "config", {}
        data = copy.deepcopy(dict(path))
        data.setdefault("name", "experiment")
    else:
        path = Path(path)
        source = str(path)
        data, lines = read_yaml_mapping(path, "config", "data:, model:, train:")
        data.setdefault("name", path.stem)
    for item in overrides:
        _apply_override(data, item, lines)
    try:
        return Config.model_validate(data, context={"skip_file_checks": not need_data})
    except ValidationError as e:
        messages = dict.fromkeys(describe(err, data, lines, source, Config) for err in e.errors())
        raise ConfigError("\n".join(messages)) from None


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML text that load_config reads back to an equal Config."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def flat_config(cfg: Config) -> dict[str, Any]:
    """The resolved config as {"train.learning_rate": 0.001, ...}; lists are values."""

    def walk(node: Any, prefix: str) -> dict[str, Any]:
        if not isinstance(node, dict):
            return {prefix: node}
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(walk(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat

    return walk(cfg.model_dump(mode="json"), "")
