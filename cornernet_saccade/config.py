"""Typed configuration objects: construction from dicts and YAML files with every key validated.

Each concern (model, test-time saccade settings, training samples, optimisation) owns a frozen or
plain ``dataclass`` with the official values as defaults. The original silently ignored unknown
keys (three of its published settings never took effect); here an unknown key, a wrong type or a
missing file raises :class:`~cornernet_saccade.errors.ConfigError` naming the source and the key.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from cornernet_saccade.errors import ConfigError
from cornernet_saccade.inputs import read_input_text

T = TypeVar("T")

#: Most values a configuration tree (a YAML file, a ``--set`` value, a checkpoint's stored config or
#: settings) may hold, counting what YAML anchors / aliases or a pickle's shared references repeat:
#: a 1 KB file of nested aliases expands to billions of values. The bundled configs hold under 100.
MAX_TREE_VALUES = 100_000
#: Deepest nesting of mappings and lists a configuration tree may have (the bundled configs: 3).
MAX_TREE_DEPTH = 32


def check_tree_size(data: Any, source: str, error: type[Exception] = ConfigError) -> None:
    """``error`` naming ``source`` when ``data`` (plain mappings, lists and scalars) holds more than
    :data:`MAX_TREE_VALUES` values once shared parts are counted each time they occur, or nests
    deeper than :data:`MAX_TREE_DEPTH`. The walk stops at the bound, so it takes bounded time
    whatever ``data`` is; call it before anything copies or compares the tree."""
    pending: list[tuple[Any, int]] = [(data, 1)]
    count = 1
    while pending:
        value, depth = pending.pop()
        children = list(value.values()) if isinstance(value, Mapping) else value if isinstance(value, (list, tuple)) else ()
        count += len(children)
        if count > MAX_TREE_VALUES:
            raise error(f"{source}: holds more than {MAX_TREE_VALUES:,} values (counting each repetition of a "
                        f"YAML alias or shared reference); refusing to expand it")
        if children and depth >= MAX_TREE_DEPTH:
            raise error(f"{source}: nested deeper than {MAX_TREE_DEPTH} levels; refusing to read it")
        pending.extend((child, depth + 1) for child in children if isinstance(child, (Mapping, list, tuple)))


def _check_value(value: Any, annotation: Any, where: str) -> Any:
    """Validate (and lightly coerce: int -> float, list -> tuple) ``value`` against ``annotation``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _check_value(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not match {annotation}")
    if annotation is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            items = [_check_value(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_type = args[0] if args else Any
            items = [_check_value(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(annotation):
        return config_from_dict(typing.cast("type[Any]", annotation), value, where)
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation in (str, bool):
        if isinstance(value, annotation):
            return value
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def config_from_dict(cls: type[T], data: Mapping[str, Any] | T | None, source: str = "config") -> T:
    """Build the dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types.

    ``source`` names where the data came from (a file path and section) for error messages.
    """
    if data is None:
        return cls()
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(typing.cast(Any, cls)) if f.init}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown} for {cls.__name__}; known: {sorted(fields)}")
    values = {k: _check_value(v, hints[k], f"{source}.{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None


def config_with_overrides(
    cls: type[T], data: Mapping[str, Any] | T | None, overrides: Mapping[str, Any] | None, source: str = "config"
) -> T:
    """:func:`config_from_dict` of ``data``, then the single fields ``overrides`` on top (checked the same way)."""
    config = config_from_dict(cls, data, source)
    if not overrides:
        return config
    return config_from_dict(cls, {**dataclasses.asdict(typing.cast(Any, config)), **overrides}, source)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-data (YAML/JSON-safe) form of a config dataclass; tuples become lists."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(config)


def _yaml_loader() -> type:
    """A safe YAML loader that also reads ``1e-4`` (no dot) as a float, as people write learning rates.

    Plain YAML 1.1 (PyYAML) only recognises floats with a dot, so ``lr: 1e-4`` would be a string.
    """
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


def parse_yaml(text: str) -> Any:
    """``text`` as YAML with the project's loader (``1e-4`` is a number); raises ``yaml.YAMLError``."""
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 (a SafeLoader subclass)
    except RecursionError:
        raise yaml.YAMLError(f"nested deeper than Python can read (the limit is {MAX_TREE_DEPTH} levels)") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` (ConfigError if missing, unparsable or not a mapping)."""
    import yaml

    path = Path(path)
    text = read_input_text(path, ConfigError, "config file")
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    check_tree_size(data, str(path))
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` with ``key.sub=value`` overrides applied (values parsed as YAML: ``1e-4``, ``[1, 2]``,
    ``null``); a copy, nested mappings are created as needed."""
    result = _copy_mapping(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value (e.g. optim.lr=1e-4)")
        value = _parse_value(text, item)
        *parents, leaf = key.split(".")
        node = result
        for depth, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parents[:depth + 1])} is not a section")
        node[leaf] = value
    return result


def _parse_value(text: str, item: str) -> Any:
    """A ``--set`` value as YAML, with ``1e-4`` read as a number."""
    import yaml

    try:
        value = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item[:80]!r}: the value is not valid YAML ({exc})") from None
    check_tree_size(value, f"--set {item[:80]!r}")
    return value


def _copy_mapping(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _copy_mapping(v) if isinstance(v, dict) else v for k, v in data.items()}


def bundled_config_dir() -> Path:
    """The folder of the training configs shipped with the package (``cornernet_saccade/configs``)."""
    from importlib import resources

    return Path(str(resources.files("cornernet_saccade") / "configs"))


def bundled_config_names() -> list[str]:
    """Names of the bundled training configs (``configs/*.yaml`` without the suffix), sorted."""
    return sorted(p.stem for p in bundled_config_dir().glob("*.yaml"))
