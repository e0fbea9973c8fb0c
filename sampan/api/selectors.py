"""Label and field selectors, parsed and matched as k8s.io/apimachinery does it.

Label selectors follow ``pkg/labels/selector.go``: the same lexer and recursive-descent parser,
the same key and value validation and the same error text, so that ``?labelSelector=`` fails
with the message the upstream apiserver returns. ``from_label_selector_object`` is
``metav1.LabelSelectorAsSelector`` for the selectors inside objects (a nil selector selects
nothing, an empty one everything).

Field selectors follow ``pkg/fields/selector.go`` for the grammar (``=``, ``==``, ``!=``, with
``\\``, ``\\,`` and ``\\=`` escapes) and, per kind, the two layers upstream keeps apart: the
field label conversion functions decide which labels a request may use (and rename a few), the
registry strategies' ``ToSelectableFields`` decide what an object's value for each label is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from sampan.api.errors import bad_request, invalid
from sampan.api.registry import Resource
from sampan.api.validation import is_label_value, is_qualified_name

# selection.Operator values.
EQUALS = "="
DOUBLE_EQUALS = "=="
NOT_EQUALS = "!="
IN = "in"
NOT_IN = "notin"
EXISTS = "exists"
DOES_NOT_EXIST = "!"
GREATER_THAN = "gt"
LESS_THAN = "lt"

_BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)
_EXACT = frozenset({EQUALS, DOUBLE_EQUALS})

# Label keys and values are validated as in object metadata (one implementation, upstream's
# messages): ``label_key_errors`` and ``label_value_errors`` are those checks.
label_key_errors = is_qualified_name
label_value_errors = is_label_value


class _InvalidRequirement(Exception):
    """A requirement that ``NewRequirement`` rejects; the message is upstream's aggregate."""


def _aggregate(messages: list[str]) -> str:
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


_INT64 = re.compile(r"[+-]?[0-9]+")


def _parse_int64(text: str) -> int | None:
    """``strconv.ParseInt(text, 10, 64)``: None where Go returns an error."""
    if not _INT64.fullmatch(text):
        return None
    number = int(text)
    return number if -(1 << 63) <= number < (1 << 63) else None


def _check_key(key: str, path: str) -> None:
    errors = label_key_errors(key)
    if errors:
        raise _InvalidRequirement(invalid(path, key, "; ".join(errors)).message())


# --------------------------------------------------------------------------------------------
# Requirements and label selectors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``key op values`` term of a label selector."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    @classmethod
    def new(cls, key: str, operator: str, values: Iterable[str] | None = None, *,
            path: str | None = None) -> Requirement:
        """``labels.NewRequirement``: validate and build, or raise ``_InvalidRequirement``.
        ``values`` None (a nil slice upstream) and empty differ only in the error text."""
        base = f"{path}." if path else ""
        values_path = base + "values"
        given = None if values is None else list(values)
        count = len(given or ())
        errors = label_key_errors(key)
        messages = [invalid(base + "key", key, "; ".join(errors)).message()] if errors else []
        if operator in (IN, NOT_IN):
            if count == 0:
                messages.append(invalid(values_path, given, "for 'in', 'notin' operators, "
                                        "values set can't be empty").message())
        elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
            if count != 1:
                messages.append(invalid(values_path, given, "exact-match compatibility requires "
                                        "one single value").message())
        elif operator in (EXISTS, DOES_NOT_EXIST):
            if count != 0:
                messages.append(invalid(values_path, given, "values set must be empty for exists "
                                        "and does not exist").message())
        elif operator in (GREATER_THAN, LESS_THAN):
            if count != 1:
                messages.append(invalid(values_path, given, "for 'Gt', 'Lt' operators, exactly "
                                        "one value is required").message())
            for i, value in enumerate(given or ()):
                if _parse_int64(value) is None:
                    messages.append(invalid(f"{values_path}[{i}]", value, "for 'Gt', 'Lt' "
                                            "operators, the value must be an integer").message())
        else:
            supported = ", ".join(f'"{op}"' for op in (*_BINARY_OPERATORS, EXISTS, DOES_NOT_EXIST))
            messages.append(f'{base}operator: Unsupported value: "{operator}": supported values: '
                            f"{supported}")
        for i, value in enumerate(given or ()):
            value_errors = label_value_errors(value)
            if value_errors:
                messages.append(invalid(f"{values_path}[{i}][{key}]", value,
                                        "; ".join(value_errors)).message())
        if messages:
            raise _InvalidRequirement(_aggregate(messages))
        return cls(key, operator, tuple(given or ()))

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            value = labels.get(self.key)
            return value is not None and value in self.values
        if op in (NOT_IN, NOT_EQUALS):
            value = labels.get(self.key)
            return value is None or value not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            return self._compare(labels.get(self.key))
        return False

    def _compare(self, value: str | None) -> bool:
        if value is None or len(self.values) != 1:
            return False
        have, want = _parse_int64(value), _parse_int64(self.values[0])
        if have is None or want is None:
            return False
        return have > want if self.operator == GREATER_THAN else have < want

    def __str__(self) -> str:
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        values = ",".join(sorted(self.values))
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({values})"
        symbol = {GREATER_THAN: ">", LESS_THAN: "<"}.get(op, op)
        return f"{self.key}{symbol}{values}"


_Matcher = Callable[[Mapping[str, str]], bool]
_NO_LABELS: Mapping[str, str] = {}


def _compile(requirements: tuple[Requirement, ...]) -> _Matcher:
    """A matcher specialised for the common shapes: nothing to check, and one or two keys
    pinned to one value each (what every controller's matchLabels selector becomes)."""
    if not requirements:
        return lambda labels: True
    exact = [(r.key, r.values[0]) for r in requirements
             if r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1]
    if len(exact) == len(requirements) == 1:
        (key, value), = exact
        return lambda labels: labels.get(key) == value
    if len(exact) == len(requirements) == 2:
        (key1, value1), (key2, value2) = exact
        return lambda labels: labels.get(key1) == value1 and labels.get(key2) == value2
    if len(exact) == len(requirements):
        return lambda labels: all(labels.get(key) == value for key, value in exact)
    return lambda labels: all(r.matches(labels) for r in requirements)


class LabelSelector:
    """A parsed label selector: the AND of its requirements, sorted by key like upstream."""

    __slots__ = ("requirements", "_selects_nothing", "_match")

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False):
        self.requirements: tuple[Requirement, ...] = tuple(
            sorted(requirements, key=lambda r: r.key))
        self._selects_nothing = nothing
        self._match: _Matcher = (lambda labels: False) if nothing else _compile(self.requirements)

    @classmethod
    def everything(cls) -> LabelSelector:
        return _EVERYTHING

    @classmethod
    def nothing(cls) -> LabelSelector:
        return _NOTHING

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (``labels.Everything()``)."""
        return not self.requirements and not self._selects_nothing

    @property
    def selects_nothing(self) -> bool:
        """True for ``labels.Nothing()``, what a nil ``metav1.LabelSelector`` becomes."""
        return self._selects_nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        return self._match(labels or _NO_LABELS)

    def exact_match_value(self, key: str) -> str | None:
        """The value ``key`` must have, when the selector pins it to one (``RequiresExactMatch``);
        an index can then answer the query."""
        for r in self.requirements:
            if r.key == key:
                if r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        if self._selects_nothing:
            return "LabelSelector.nothing()"
        return f"LabelSelector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, LabelSelector) and self.requirements == other.requirements
                and self._selects_nothing == other._selects_nothing)

    def __hash__(self) -> int:
        return hash((self.requirements, self._selects_nothing))


_EVERYTHING = LabelSelector()
_NOTHING = LabelSelector(nothing=True)


def selector_from_set(labels: Mapping[str, str] | None) -> LabelSelector:
    """``labels.SelectorFromSet``: every key must equal its value; nil or empty selects all.
    Nothing is validated, like upstream."""
    if not labels:
        return _EVERYTHING
    return LabelSelector(Requirement(k, EQUALS, (v,)) for k, v in labels.items())


_SELECTOR_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def from_label_selector_object(selector: Mapping[str, Any] | None) -> LabelSelector:
    """``metav1.LabelSelectorAsSelector``: None selects nothing, ``{}`` selects everything.

    Raises StatusError 400 with upstream's message when a key, value or operator is invalid."""
    if selector is None:
        return _NOTHING
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not match_labels and not expressions:
        return _EVERYTHING
    requirements = []
    try:
        for key, value in match_labels.items():
            requirements.append(Requirement.new(key, EQUALS, [value]))
        for expression in expressions:
            operator = _SELECTOR_OPERATORS.get(expression.get("operator"))
            if operator is None:
                raise _InvalidRequirement(
                    f'"{expression.get("operator", "")}" is not a valid label selector operator')
            values = expression.get("values") or None
            requirements.append(Requirement.new(expression.get("key", ""), operator, values))
    except _InvalidRequirement as e:
        raise bad_request(str(e)) from None
    return LabelSelector(requirements)


# --------------------------------------------------------------------------------------------
# Label selector parser (labels.Parse)
# --------------------------------------------------------------------------------------------

_END, _CLOSE_PAREN, _COMMA, _NOT, _DOUBLE_EQUALS, _EQUALS, _GREATER, _IDENTIFIER, _IN, _LESS, \
    _NOT_EQUALS, _NOT_IN, _OPEN_PAREN = range(13)

_KEYWORDS = {
    ")": _CLOSE_PAREN, ",": _COMMA, "!": _NOT, "==": _DOUBLE_EQUALS, "=": _EQUALS,
    ">": _GREATER, "in": _IN, "<": _LESS, "!=": _NOT_EQUALS, "notin": _NOT_IN, "(": _OPEN_PAREN,
}
_TOKEN_OPERATORS = {
    _IN: IN, _EQUALS: EQUALS, _DOUBLE_EQUALS: DOUBLE_EQUALS, _GREATER: GREATER_THAN,
    _LESS: LESS_THAN, _NOT_IN: NOT_IN, _NOT_EQUALS: NOT_EQUALS,
}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")

_Token = tuple[int, str]


def _lex(text: str) -> list[_Token]:
    """The token stream of ``text``, ending with the end-of-string token."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i == n:
            tokens.append((_END, ""))
            return tokens
        start = i
        if text[i] in _SPECIAL:
            # The longest run of special characters that is still an operator: "!=" and "==".
            i += 2 if text[i:i + 2] in ("!=", "==") else 1
        else:
            while i < n and text[i] not in _SPECIAL and text[i] not in _WHITESPACE:
                i += 1
        literal = text[start:i]
        tokens.append((_KEYWORDS.get(literal, _IDENTIFIER), literal))


class _Parser:
    """The recursive descent of ``labels.Parser``, error messages included. In a value
    position the keywords ``in`` and ``notin`` are plain identifiers."""

    def __init__(self, text: str):
        self.tokens = _lex(text)
        self.position = 0

    def _lookahead(self, as_values: bool = True) -> _Token:
        return self._as(self.tokens[self.position], as_values)

    def _consume(self, as_values: bool = True) -> _Token:
        self.position += 1
        return self._as(self.tokens[self.position - 1], as_values)

    @staticmethod
    def _as(token: _Token, as_values: bool) -> _Token:
        if as_values and token[0] in (_IN, _NOT_IN):
            return _IDENTIFIER, token[1]
        return token

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            kind, literal = self._lookahead()
            if kind == _END:
                return requirements
            if kind not in (_IDENTIFIER, _NOT):
                raise _InvalidRequirement(
                    f"found '{literal}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self._requirement())
            except _InvalidRequirement as e:
                raise _InvalidRequirement(f"unable to parse requirement: {e}") from None
            kind, literal = self._consume()
            if kind == _END:
                return requirements
            if kind != _COMMA:
                raise _InvalidRequirement(f"found '{literal}', expected: ',' or 'end of string'")
            kind, literal = self._lookahead()
            if kind not in (_IDENTIFIER, _NOT):
                raise _InvalidRequirement(f"found '{literal}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        key, operator = self._key_and_inferred_operator()
        if operator in (EXISTS, DOES_NOT_EXIST):
            return Requirement.new(key, operator, [])
        operator = self._operator()
        values = self._values() if operator in (IN, NOT_IN) else self._exact_value()
        return Requirement.new(key, operator, sorted(values))

    def _key_and_inferred_operator(self) -> tuple[str, str]:
        operator = ""
        kind, literal = self._consume()
        if kind == _NOT:
            operator = DOES_NOT_EXIST
            kind, literal = self._consume()
        if kind != _IDENTIFIER:
            raise _InvalidRequirement(f"found '{literal}', expected: identifier")
        # The parser validates keys without a field path: upstream prints it as "<nil>".
        _check_key(literal, "<nil>")
        if self._lookahead()[0] in (_END, _COMMA) and operator != DOES_NOT_EXIST:
            operator = EXISTS
        return literal, operator

    def _operator(self) -> str:
        kind, literal = self._consume(as_values=False)
        operator = _TOKEN_OPERATORS.get(kind)
        if operator is None:
            raise _InvalidRequirement(
                f"found '{literal}', expected: {', '.join(_BINARY_OPERATORS)}")
        return operator

    def _values(self) -> set[str]:
        kind, literal = self._consume()
        if kind != _OPEN_PAREN:
            raise _InvalidRequirement(f"found '{literal}' expected: '('")
        kind, literal = self._lookahead()
        if kind in (_IDENTIFIER, _COMMA):
            values = self._identifiers()
            if self._consume()[0] != _CLOSE_PAREN:
                raise _InvalidRequirement(f"found '{literal}', expected: ')'")
            return values
        if kind == _CLOSE_PAREN:
            self._consume()
            return {""}
        raise _InvalidRequirement(f"found '{literal}', expected: ',', ')' or identifier")

    def _identifiers(self) -> set[str]:
        values: set[str] = set()
        while True:
            kind, literal = self._consume()
            if kind == _IDENTIFIER:
                values.add(literal)
                next_kind, next_literal = self._lookahead()
                if next_kind == _CLOSE_PAREN:
                    return values
                if next_kind != _COMMA:
                    raise _InvalidRequirement(f"found '{next_literal}', expected: ',' or ')'")
            elif kind == _COMMA:
                # "(,", ",)" and ",," each stand for an empty value.
                if not values:
                    values.add("")
                next_kind = self._lookahead()[0]
                if next_kind == _CLOSE_PAREN:
                    values.add("")
                    return values
                if next_kind == _COMMA:
                    values.add("")
            else:
                raise _InvalidRequirement(f"found '{literal}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        if self._lookahead()[0] in (_END, _COMMA):
            return {""}
        kind, literal = self._consume()
        if kind == _IDENTIFIER:
            return {literal}
        raise _InvalidRequirement(f"found '{literal}', expected: identifier")


def parse_label_selector(text: str) -> LabelSelector:
    """Parse ``?labelSelector=`` (``labels.Parse``). Raises StatusError 400 with the message
    the apiserver returns, e.g. ``unable to parse requirement: found '', expected: identifier``.
    """
    if not text:
        return _EVERYTHING
    try:
        return LabelSelector(_Parser(text).parse())
    except _InvalidRequirement as e:
        raise bad_request(str(e)) from None


# --------------------------------------------------------------------------------------------
# Field selectors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    """``field=value`` or ``field!=value``; ``field`` is the canonical label after the kind's
    conversion (``spec.host`` becomes ``spec.nodeName``)."""

    field: str
    operator: str  # EQUALS or NOT_EQUALS; "==" parses to EQUALS like upstream
    value: str

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{escape_field_value(self.value)}"


FieldGetter = Callable[[dict[str, Any]], str]


class FieldSelector:
    """A parsed field selector bound to one kind's selectable fields."""

    __slots__ = ("requirements", "_checks")

    def __init__(self, requirements: Iterable[FieldRequirement] = (),
                 getters: Mapping[str, FieldGetter] | None = None):
        self.requirements: tuple[FieldRequirement, ...] = tuple(requirements)
        getters = getters or {}
        self._checks = tuple((getters.get(r.field, _no_value), r.value, r.operator == NOT_EQUALS)
                             for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: dict[str, Any]) -> bool:
        for get, value, negate in self._checks:
            if (get(obj) == value) == negate:
                return False
        return True

    def exact_match_value(self, field: str) -> str | None:
        """The value ``field`` must equal (``RequiresExactMatch``), for index lookups."""
        for r in self.requirements:
            if r.field == field and r.operator == EQUALS:
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return f"FieldSelector({str(self)!r})"


def escape_field_value(value: str) -> str:
    """``fields.EscapeValue``: backslash-escape ``\\``, ``,`` and ``=``."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_field_value(value: str) -> str:
    if not any(c in value for c in "\\,="):
        return value
    out: list[str] = []
    escaped = False
    for c in value:
        if escaped:
            if c not in "\\,=":
                raise bad_request(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c in ",=":
            # Upstream formats the rune with %v: its code point, not the character.
            raise bad_request(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if escaped:
        raise bad_request("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not backslash-escaped, keeping the escapes."""
    terms, start, escaped = [], 0, False
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    # The first operator occurrence splits the term; "!=" and "==" win over "=" there.
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def parse_field_selector(text: str, resource: Resource) -> FieldSelector:
    """Parse ``?fieldSelector=`` for ``resource`` and convert every label as the apiserver does.

    Raises StatusError 400: for syntax (``invalid selector: 'x'; can't understand 'x'``), bad
    escapes, and labels the kind does not support (``field label not supported: foo``)."""
    labels = field_labels(resource)
    requirements = []
    for term in sorted(_split_terms(text)) if text else ():
        if not term:
            continue
        split = _split_term(term)
        if split is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        label, op, raw_value = split
        value = _unescape_field_value(raw_value)
        requirements.append(FieldRequirement(label, NOT_EQUALS if op == NOT_EQUALS else EQUALS,
                                             value))
    converted = [FieldRequirement(labels.convert(r.field), r.operator, r.value)
                 for r in requirements]
    return FieldSelector(converted, labels.getters)


# --------------------------------------------------------------------------------------------
# Per-kind field labels: which a request may use, and each one's value on an object
# --------------------------------------------------------------------------------------------


def _no_value(obj: dict[str, Any]) -> str:
    return ""


def _go_sprint(value: Any) -> str:
    """``fmt.Sprint`` of the scalars a selectable field can hold: strings, integers, booleans
    (CRD validation allows no other type for selectableFields)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _at(*path: str, default: str = "") -> FieldGetter:
    """The value at ``path``, rendered like Go renders the typed field."""
    def get(obj: dict[str, Any]) -> str:
        value: Any = obj
        for key in path:
            if not isinstance(value, dict):
                return default
            value = value.get(key)
            if value is None:
                return default
        return value if isinstance(value, str) else _go_sprint(value)
    return get


def _flag(*path: str) -> FieldGetter:
    return _at(*path, default="false")


def _count(*path: str) -> FieldGetter:
    return _at(*path, default="0")


def _pod_ip(pod: dict[str, Any]) -> str:
    # Internally the primary IP is status.podIPs[0]; the v1 conversion makes status.podIP
    # authoritative when both are set.
    status = pod.get("status") or {}
    if status.get("podIP"):
        return status["podIP"]
    ips = status.get("podIPs") or ()
    return (ips[0].get("ip") or "") if ips else ""


def _event_reference(field: str) -> FieldGetter:
    # Core events carry involvedObject, events.k8s.io/v1 events the same reference as regarding.
    def get(event: dict[str, Any]) -> str:
        reference = event.get("involvedObject") or event.get("regarding") or {}
        value = reference.get(field)
        return "" if value is None else str(value)
    return get


def _event_reporting_controller(event: dict[str, Any]) -> str:
    return event.get("reportingComponent") or event.get("reportingController") or ""


def _event_source(event: dict[str, Any]) -> str:
    source = event.get("source") or event.get("deprecatedSource") or {}
    return source.get("component") or _event_reporting_controller(event)


_NAME: dict[str, FieldGetter] = {"metadata.name": _at("metadata", "name")}
_NAME_AND_NAMESPACE: dict[str, FieldGetter] = {
    **_NAME, "metadata.namespace": _at("metadata", "namespace")}

_EVENT_GETTERS: dict[str, FieldGetter] = {
    **_NAME_AND_NAMESPACE,
    **{f"involvedObject.{f}": _event_reference(f) for f in (
        "kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
    "reason": _at("reason"),
    "reportingComponent": _event_reporting_controller,
    "source": _event_source,
    "type": _at("type"),
}


def _label_not_supported(label: str) -> str:
    return f"field label not supported: {label}"


def _not_a_known_field_selector(label: str) -> str:
    return f'"{label}" is not a known field selector: only "metadata.name", "metadata.namespace"'


@dataclass(frozen=True)
class FieldLabels:
    """One kind's field selector contract: the labels its conversion function accepts
    (``accepted``: label → canonical label), the value of each canonical label on an object
    (``getters``; an accepted label without a getter is always ""), and the rejection text."""

    accepted: Mapping[str, str]
    getters: Mapping[str, FieldGetter]
    rejection: Callable[[str], str] = _label_not_supported

    def convert(self, label: str) -> str:
        canonical = self.accepted.get(label)
        if canonical is None:
            raise bad_request(self.rejection(label))
        return canonical


def _labels(getters: Mapping[str, FieldGetter], *, aliases: Mapping[str, str] | None = None,
            unselectable: Iterable[str] = (),
            rejection: Callable[[str], str] = _label_not_supported) -> FieldLabels:
    accepted = {label: label for label in getters}
    accepted.update({label: label for label in unselectable})
    accepted.update(aliases or {})
    return FieldLabels(accepted, getters, rejection)


# (group, kind) → contract, from pkg/apis/<group>/<version>/conversion.go and the strategies.
_BUILTIN_FIELD_LABELS: dict[tuple[str, str], FieldLabels] = {
    ("", "Pod"): _labels(
        {**_NAME_AND_NAMESPACE,
         "spec.nodeName": _at("spec", "nodeName"),
         "spec.restartPolicy": _at("spec", "restartPolicy"),
         "spec.schedulerName": _at("spec", "schedulerName"),
         "spec.serviceAccountName": _at("spec", "serviceAccountName"),
         "spec.hostNetwork": _flag("spec", "hostNetwork"),
         "status.phase": _at("status", "phase"),
         "status.podIP": _pod_ip,
         "status.nominatedNodeName": _at("status", "nominatedNodeName")},
        # Accepted by the conversion but never set by ToSelectableFields: always "".
        unselectable=("status.podIPs",),
        # Old v1 clients send spec.host.
        aliases={"spec.host": "spec.nodeName"}),
    ("", "Node"): _labels({**_NAME, "spec.unschedulable": _flag("spec", "unschedulable")}),
    ("", "Namespace"): _labels({**_NAME, "status.phase": _at("status", "phase")}),
    ("", "Secret"): _labels({**_NAME_AND_NAMESPACE, "type": _at("type")}),
    ("", "Service"): _labels({**_NAME_AND_NAMESPACE, "spec.clusterIP": _at("spec", "clusterIP"),
                              "spec.type": _at("spec", "type")}),
    ("", "ReplicationController"): _labels(
        {**_NAME_AND_NAMESPACE, "status.replicas": _count("status", "replicas")}),
    ("", "Event"): _labels(_EVENT_GETTERS),
    ("events.k8s.io", "Event"): FieldLabels(
        {**{label: label for label in ("metadata.name", "metadata.namespace", "reason", "source",
                                       "type")},
         **{f"regarding.{f}": f"involvedObject.{f}" for f in (
             "kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
         "reportingController": "reportingComponent"},
        _EVENT_GETTERS),
    ("batch", "Job"): _labels(
        {**_NAME_AND_NAMESPACE, "status.successful": _count("status", "succeeded")},
        rejection=lambda label: f'field label "{label}" not supported for Job'),
}

# Kinds without a conversion function: runtime.DefaultMetaV1FieldSelectorConversion.
_DEFAULT_FIELD_LABELS = _labels(_NAME_AND_NAMESPACE, rejection=_not_a_known_field_selector)


def crd_version(resource: Resource) -> dict[str, Any]:
    """The served version entry of a custom resource's CRD; ``resource.crd`` may hold either
    that entry or the whole CustomResourceDefinition."""
    crd = resource.crd or {}
    versions = (crd.get("spec") or {}).get("versions")
    if versions is None:
        return crd
    return next((v for v in versions if v.get("name") == resource.version), {})


def _custom_resource_labels(resource: Resource) -> FieldLabels:
    getters = dict(_NAME_AND_NAMESPACE if resource.namespaced else _NAME)
    for selectable in crd_version(resource).get("selectableFields") or ():
        label = selectable.get("jsonPath", "").removeprefix(".")
        if label:
            getters[label] = _at(*label.split("."))
    return _labels(getters)


def field_labels(resource: Resource) -> FieldLabels:
    """The field selector contract of ``resource``'s kind."""
    if resource.crd is not None:
        return _custom_resource_labels(resource)
    return _BUILTIN_FIELD_LABELS.get((resource.group, resource.kind), _DEFAULT_FIELD_LABELS)


__all__ = [
    "FieldLabels", "FieldRequirement", "FieldSelector", "LabelSelector", "Requirement",
    "crd_version", "escape_field_value", "field_labels", "from_label_selector_object",
    "label_key_errors", "label_value_errors", "parse_field_selector", "parse_label_selector", "selector_from_set",
]
