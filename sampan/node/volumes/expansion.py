"""``$(VAR)`` expansion as upstream's ``third_party/forked/golang/expansion``: used for env
values, command and args, and subPathExpr. ``$$`` is a literal ``$``; a reference to an unknown
name, an unterminated ``$(`` and a ``$`` followed by anything else stay as written."""

from __future__ import annotations

from collections.abc import Callable, Mapping


def mapping_for(*contexts: Mapping[str, str]) -> Callable[[str], str]:
    """Look a name up in each context in turn; an unknown name maps back to ``$(name)``."""
    def mapping(name: str) -> str:
        for context in contexts:
            value = context.get(name)
            if value is not None:
                return value
        return f"$({name})"
    return mapping


def expand(text: str, mapping: Callable[[str], str]) -> str:
    """Replace ``$(NAME)`` references using ``mapping``; ``$$`` is a literal ``$``."""
    if "$" not in text:
        return text
    out: list[str] = []
    checkpoint, cursor, end = 0, 0, len(text)
    while cursor < end:
        if text[cursor] == "$" and cursor + 1 < end:
            out.append(text[checkpoint:cursor])
            following = text[cursor + 1]
            if following == "$":                        # escaped operator
                out.append("$")
                cursor += 1
            elif following == "(":
                close = text.find(")", cursor + 2)
                if close < 0:                           # incomplete reference: keep "$("
                    out.append("$(")
                    cursor += 1
                else:
                    out.append(mapping(text[cursor + 2:close]))
                    cursor = close
            else:                                       # a lone operator and the next char
                out.append("$" + following)
                cursor += 1
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)
