"""JSON from strangers, read within bounds: a clear error instead of a crash or a poisoned row.

`json.loads` accepts what no notice can hold and what breaks the code after it: nesting deep
enough to exhaust the interpreter's stack (3 KB of `[` did), integers thousands of digits long
(`ValueError` from Python's own limit, not a `JSONDecodeError`), `NaN` and `Infinity` (which
PostgreSQL refuses in a JSON column, and which break an area map), and strings holding NUL
(which PostgreSQL refuses in text). `loads` refuses each with a `ValueError` that says which;
in what Clarion polls, a NUL and a number too large for a float are read instead (see `loads`).

A lone surrogate (`"\\ud83d"`: half an emoji, cut by a publisher that counts UTF-16 units) is
no text any database, encoder or page can hold; it becomes U+FFFD, the replacement character,
as a browser shows it, and the rest of the document is read (one such item made a whole feed's
poll fail with an encoding error).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from clarion.model import storable

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


def loads(
    data: bytes | str,
    *,
    max_depth: int = MAX_DEPTH,
    nul: Literal["refuse", "replace"] = "refuse",
    out_of_range: Literal["refuse", "infinity"] = "refuse",
) -> Any:
    """Parse JSON; JSONRefused (a ValueError) saying why it is not acceptable.

    For what Clarion polls (the NWS API, a Statuspage, a JSON Feed, GTFS-rt's JSON form), where
    one document lists many items and one item's odd value must not keep the others from
    being posted: `nul="replace"` reads a NUL in a string as U+FFFD, and
    `out_of_range="infinity"` reads a number too large for a float (`1e999`: JSON sets no
    range) as infinity, which the model keeps from every place and height (`ring_ok`,
    `Area`'s validators) and the store writes as null. What is pushed to Clarion is refused,
    so that its sender hears why. `NaN` and `Infinity` are no JSON, and are always refused."""
    parse_float = float if out_of_range == "infinity" else _float
    try:
        value = json.loads(
            data, parse_constant=_no_constant, parse_int=_int, parse_float=parse_float
        )
    except RecursionError:
        raise JSONRefused(f"nested deeper than {max_depth} levels") from None
    except JSONRefused:
        raise
    except (UnicodeDecodeError, ValueError) as exc:
        raise JSONRefused(f"not valid JSON ({exc})") from None
    replace_nul = nul == "replace"
    _check(value, max_depth, refuse_nul=not replace_nul)
    held = _SURROGATE.search(data) if isinstance(data, str) else _SURROGATE_ESCAPE.search(data)
    nul_held = replace_nul and ("\\u0000" in data if isinstance(data, str) else b"\\u0000" in data)
    if held or nul_held:
        value = _mend(value)
    return value


# An escaped surrogate (json.loads joins a valid pair, keeps a lone one); in str input, a raw
# one too (valid UTF-8 bytes hold none).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")


def _mend(value: Any) -> Any:
    """`value` with every lone surrogate and NUL in its strings (keys too) replaced by U+FFFD
    (a NUL is there only when `loads` was told to replace it). Depth is already checked, so
    the recursion is bounded."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, list):
        return [_mend(v) for v in value]
    if isinstance(value, dict):
        return {_mend(k): _mend(v) for k, v in value.items()}
    return value


def _check(value: Any, max_depth: int, *, refuse_nul: bool = True) -> None:
    """Depth and NUL characters, without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise JSONRefused(f"nested deeper than {max_depth} levels")
            children = list(item.items()) if isinstance(item, dict) else list(enumerate(item))
            for key, child in children:
                if refuse_nul and isinstance(key, str) and "\x00" in key:
                    raise JSONRefused("a NUL character in a key")
                stack.append((child, depth + 1))
        elif refuse_nul and isinstance(item, str) and "\x00" in item:
            raise JSONRefused("a NUL character in a string")
