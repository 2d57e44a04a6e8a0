"""JSON from strangers, read within bounds: a clear error instead of a crash or a poisoned row.

`json.loads` accepts what no notice can hold and what breaks the code after it: nesting deep
enough to exhaust the interpreter's stack (3 KB of `[` did), integers thousands of digits long
(`ValueError` from Python's own limit, not a `JSONDecodeError`), `NaN` and `Infinity` (which
PostgreSQL refuses in a JSON column, and which break an area map), and strings holding NUL
(which PostgreSQL refuses in text). `loads` refuses each with a `ValueError` that says which.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64  # a GeoJSON MultiPolygon is 5 deep; nothing real comes near this
MAX_INT_DIGITS = 30


class JSONRefused(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise JSONRefused(f"{name} is not a number JSON allows")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JSONRefused(f"an integer of {len(text)} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JSONRefused(f"{text[:20]} is out of range")
    return value


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON; JSONRefused (a ValueError) saying why it is not acceptable."""
    try:
        value = json.loads(data, parse_constant=_no_constant, parse_int=_int, parse_float=_float)
    except RecursionError:
        raise JSONRefused(f"nested deeper than {max_depth} levels") from None
    except JSONRefused:
        raise
    except (UnicodeDecodeError, ValueError) as exc:
        raise JSONRefused(f"not valid JSON ({exc})") from None
    _check(value, max_depth)
    return value


def _check(value: Any, max_depth: int) -> None:
    """Depth and NUL characters, without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise JSONRefused(f"nested deeper than {max_depth} levels")
            children = list(item.items()) if isinstance(item, dict) else list(enumerate(item))
            for key, child in children:
                if isinstance(key, str) and "\x00" in key:
                    raise JSONRefused("a NUL character in a key")
                stack.append((child, depth + 1))
        elif isinstance(item, str) and "\x00" in item:
            raise JSONRefused("a NUL character in a string")
