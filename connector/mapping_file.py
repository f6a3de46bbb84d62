"""Reads a mapping file (YAML) and hands its content to :func:`connector.mapping.parse_mapping`.

The only module that knows mapping files are YAML on disk; ``connector.mapping`` stays pure.
A file that cannot be read or parsed is a :class:`~connector.errors.ConfigError` naming the
file and, for YAML syntax, the line and column.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from connector.errors import ConfigError, ConfigProblem
from connector.mapping import MappingSpec, parse_mapping

__all__ = ["DEFAULT_MAPPINGS", "default_mapping_path", "load_mapping_file"]

DEFAULT_MAPPINGS = Path(__file__).resolve().parents[1] / "mappings"


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
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = "(file)" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem(source, where, f"is not valid YAML: {problem}")]) from None
    return parse_mapping(raw, source)
