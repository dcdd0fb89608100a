"""Reading settings files: TOML parsed once at the edge, every problem named by file and key.

The scenario file (:mod:`npl_engine.scenarios`), the tranche file
(:mod:`npl_engine.valuation`) and the other settings files share this reader, so that every
file's problems read alike: ``scenarios/eu.toml: scenario[2].weight (scenario 'adverse'):
must be greater than 0, got -0.1``. Indices in key paths count array-of-tables entries from 1,
in file order. Validation itself is pydantic's; this module only words its errors for someone
editing a TOML file and lists all of them at once.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic_core import ErrorDetails

from npl_engine.errors import SettingsError

__all__ = [
    "describe_error",
    "describe_value",
    "key_path",
    "parse_toml",
    "read_settings",
    "toml_string",
    "toml_value",
    "unknown_key",
]

_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")

_EXPECTED = {
    "float_type": "expected a number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "dict_type": "expected a table",
    "finite_number": "must be a finite number",
    "string_too_short": "must be 1 to 64 characters long",
    "string_too_long": "must be 1 to 64 characters long",
}
_BOUNDS = {
    "greater_than": ("gt", "must be greater than"),
    "greater_than_equal": ("ge", "must be at least"),
    "less_than": ("lt", "must be less than"),
    "less_than_equal": ("le", "must be at most"),
}


def read_settings(path: str | Path, what: str) -> str:
    """The text of a settings file; SettingsError naming it if it cannot be read or decoded.

    ``what`` names the file's kind in messages ("scenario file", "tranche file").
    """
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        msg = f"{source}: cannot read the {what}: {reason}"
        raise SettingsError(msg) from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"{source}: not UTF-8 text (TOML files are UTF-8): byte {exc.start} is invalid"
        raise SettingsError(msg) from exc


def parse_toml(text: str, source: str, allowed: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Parse a settings file's TOML: its allowed top-level keys, and a problem per other key.

    Raises
    ------
    SettingsError
        If the text is not valid TOML (with the line and its text).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(_toml_syntax_message(source, text, exc)) from exc
    problems = [
        f"{source}: {key}: {unknown_key(key, allowed)}" for key in data if key not in allowed
    ]
    return {key: value for key, value in data.items() if key in allowed}, problems


def _toml_syntax_message(source: str, text: str, exc: tomllib.TOMLDecodeError) -> str:
    """Describe a TOML syntax error with its line, and the line's text where known."""
    reason = _TOML_POSITION.sub("", str(exc)).strip()
    match = _TOML_POSITION.search(str(exc))
    if match is None:
        return f"{source}: invalid TOML: {reason}"
    line_no, col_no = int(match.group(1)), int(match.group(2))
    lines = text.splitlines()
    shown = f": {lines[line_no - 1].strip()!r}" if 0 < line_no <= len(lines) else ""
    return f"{source}: line {line_no}, column {col_no}: invalid TOML ({reason}){shown}"


def key_path(error: ErrorDetails, data: Mapping[str, Any], *, named: Sequence[str] = ()) -> str:
    """Render a pydantic error location as a key path: ``scenario[2].weight``.

    For an array of tables listed in ``named`` whose entries have a ``name``, the entry's name
    follows its position, which is easy to miscount in a long file:
    ``scenario[2].weight (scenario 'adverse')``.
    """
    loc: tuple[int | str, ...] = tuple(error["loc"])
    suffix = (error.get("ctx") or {}).get("loc_suffix")
    if suffix is not None:
        loc += tuple(suffix)
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part + 1}]")
        elif part == "*":
            parts.append("[*]")
        else:
            parts.append(f".{part}" if parts else part)
    path = "".join(parts) or "(file)"
    if len(loc) > 1 and loc[0] in named and loc[2:] != ("name",):
        index, tables = loc[1], data.get(str(loc[0]))
        if isinstance(index, int) and isinstance(tables, list) and index < len(tables):
            entry = tables[index]
            if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
                path += f" ({loc[0]} {entry['name']!r})"
    return path


def describe_error(
    error: ErrorDetails,
    *,
    allowed: Callable[[tuple[int | str, ...]], Sequence[str]],
    missing: Mapping[tuple[int | str, ...], str] | None = None,
) -> str:
    """Reword one pydantic error for someone editing a TOML file.

    Parameters
    ----------
    error
        One of ``ValidationError.errors()``.
    allowed
        The keys allowed at an error's location (for "unknown key; did you mean ...?").
    missing
        Messages for required tables that are absent, by location (e.g. ``("pricing",)``).
    """
    kind = error["type"]
    loc = tuple(error["loc"])
    got = describe_value(error.get("input"))
    if kind == "missing":
        return (missing or {}).get(loc, "missing required key")
    if kind == "extra_forbidden":
        return unknown_key(str(loc[-1]), allowed(loc))
    if kind in {"tuple_type", "list_type"} and loc:
        return f"expected an array of [[{loc[0]}]] tables, got {got}"
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}, got {got}"
    if kind in _BOUNDS:
        ctx_key, words = _BOUNDS[kind]
        return f"{words} {(error.get('ctx') or {}).get(ctx_key)}, got {got}"
    # Custom errors (weights, duplicates, deductions, names) carry a finished sentence.
    return str(error["msg"])


def describe_value(value: object) -> str:
    """Show a TOML value as the user wrote it, with its TOML type where that helps."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f"{toml_string(value)} (a string)"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, Sequence):
        return "an array"
    return f"a {type(value).__name__}"


def unknown_key(key: str, allowed: Sequence[str]) -> str:
    """Say a key is not allowed, suggesting the closest allowed key."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key{hint} (allowed: {', '.join(allowed)})"


def toml_value(value: object) -> str:
    """Format a str, bool, int or finite float as a TOML value."""
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, bool):  # bool is an int: keep it out of the int branch
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    msg = f"cannot write {type(value).__name__} as TOML"
    raise TypeError(msg)


def toml_string(value: str) -> str:
    """Quote ``value`` as a TOML basic string, escaping what TOML requires."""
    out = ['"']
    for ch in value:
        if ch in {'"', "\\"}:
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(f"\\U{ord(ch):08X}")
    out.append('"')
    return "".join(out)
