"""Go's formatting of JSON values, for error messages that must read as upstream's do:
``%v`` (``go_value``), ``strconv.Quote`` (``go_quote``) and float64's shortest ``%v``."""

from __future__ import annotations

import unicodedata
from decimal import Decimal
from typing import Any

_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
            "\v": "\\v"}


def go_value(value: Any) -> str:
    """``%v`` of a JSON value: ``map[a:1 b:[x y]]``."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    return str(value)


def go_float(value: float) -> str:
    """``%v`` of a float64 (strconv's shortest ``%g``): ``0.5``, ``1e+06``, ``1.5e-05``."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    digits, power = shortest_digits(value)
    sign = "-" if value < 0 else ""
    if value != 0 and (power < -4 or power >= 6):
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"
    return sign + format(Decimal(repr(abs(value))).normalize(), "f")


def go_quote(text: str) -> str:
    """strconv.Quote."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif go_printable(char):
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


def shortest_digits(value: float) -> tuple[str, int]:
    """The shortest decimal digits that round-trip ``value``, and its decimal exponent."""
    _, digits, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    return "".join(map(str, digits)), len(digits) + int(exponent) - 1


def go_printable(char: str) -> bool:
    """unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space."""
    return char == " " or unicodedata.category(char)[0] in "LMNPS"
