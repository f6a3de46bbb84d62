"""Reads a mapping file (YAML) and hands its content to :func:`connector.mapping.parse_mapping`.

The only module that knows mapping files are YAML on disk; ``connector.mapping`` stays pure.
A file that cannot be read, is not UTF-8, does not parse or gives a key twice is a
:class:`~connector.errors.ConfigError` naming the file and, for YAML, the line and column.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from connector.errors import ConfigError, ConfigProblem
from connector.mapping import MappingSpec, parse_mapping

__all__ = ["DEFAULT_MAPPINGS", "default_mapping_path", "load_mapping_file"]

DEFAULT_MAPPINGS = Path(__file__).resolve().parents[1] / "mappings"


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load``, except that a key given twice in one mapping is an error: YAML's
    "the last one wins" would silently drop the first of two entries for one CRM field."""


def _no_duplicate_keys(loader: _StrictLoader, node: yaml.MappingNode) -> dict[object, object]:
    loader.flatten_mapping(node)
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"found the key {key!r} twice",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _no_duplicate_keys,
)


def default_mapping_path(crm: str) -> Path:
    """``mappings/<crm>.yaml`` beside the package (the project root, or /app in the image)."""
    return DEFAULT_MAPPINGS / f"{crm}.yaml"


def load_mapping_file(path: Path) -> MappingSpec:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(source, "(file)", f"cannot be read: {exc.strerror}")]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [ConfigProblem(source, "(file)", f"is not UTF-8 text (byte {exc.start})")]
        ) from None
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass  # nosec B506
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = "(file)" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem(source, where, f"is not valid YAML: {problem}")]) from None
    return parse_mapping(raw, source)
