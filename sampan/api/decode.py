"""Request bodies → objects, and the two findings of strict field validation.

Upstream decodes a body twice over: into the typed object, which drops fields the type does not
declare, and — when the client asked for ``fieldValidation=Strict`` or ``Warn`` (kubectl always
does) — with a strict decoder that records *unknown* and *duplicate* fields. Here:

- ``decode`` parses JSON or YAML and returns the object with the paths of duplicate keys;
- ``prune_unknown`` drops the fields the schema does not declare and returns their paths;
- ``apply_field_validation`` turns both lists into warnings or a 400, as the ``fieldValidation``
  directive says.

Paths are written as upstream's strict decoder writes them: ``spec.replicas``,
``spec.template.spec.containers[0].imagee``.

Duplicate keys cost nothing on the common path: ``orjson`` parses the body, and a duplicate is
ruled out by counting ``:`` bytes. Every key/value separator is a colon, and colons inside
strings survive a parse and re-serialisation unchanged (``\\u003a`` escapes are counted too), so
the input has more colons than ``orjson.dumps`` of the parsed tree exactly when some key/value
pair was dropped, i.e. when a key repeats. Only then is the body parsed again with
``object_pairs_hook`` to find where.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import yaml

from sampan.api.errors import StatusError, bad_request, invalid_error, not_supported
from sampan.api.schema import Schemas, node_type, preserves_unknown

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

STRICT, WARN, IGNORE = "Strict", "Warn", "Ignore"
_DIRECTIVES = ("", IGNORE, STRICT, WARN)  # sorted, as upstream's error lists them


class DuplicateField(str):
    """The path of a key that appears twice in one object. ``line`` is set for YAML bodies,
    whose duplicates upstream reports in go-yaml's words ("line 5: key "replicas" already set
    in map") rather than as ``duplicate field "spec.replicas"``."""

    line: int | None
    key: str

    def __new__(cls, path: str, key: str, line: int | None = None) -> DuplicateField:
        self = super().__new__(cls, path)
        self.key = key
        self.line = line
        return self


# --------------------------------------------------------------------------------------------
# decode


def decode(body: bytes, content_type: str, *, kind: str = "") -> tuple[Any, list[str]]:
    """Parse a request body; return ``(object, duplicate_field_paths)``.

    ``content_type`` picks the parser: any ``...yaml`` media type (``application/yaml``,
    ``application/apply-patch+yaml``) is YAML, everything else JSON — which media types a verb
    accepts is the server's decision (415), not this function's. ``kind``, when given, is the
    kind the endpoint expects; a malformed body then fails the way upstream's typed decoder
    fails ("the object provided is unrecognized (must be of type Pod): ..."). Raises a 400
    ``StatusError`` for a body that does not parse.
    """
    media = content_type.split(";", 1)[0].strip().lower()
    if media.endswith("yaml"):
        return _decode_yaml(body, kind)
    return _decode_json(body, kind)


def _decode_json(body: bytes, kind: str) -> tuple[Any, list[str]]:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _decode_json_slowly(body, kind)
    if _may_have_duplicates(body, obj):
        return _json_with_duplicates(body)
    return obj, []


def _may_have_duplicates(body: bytes, obj: Any) -> bool:
    if not isinstance(obj, (dict, list)):
        return False
    colons_in = body.count(b":")
    if b"\\u003" in body:
        colons_in += body.count(b"\\u003a") + body.count(b"\\u003A")
    return colons_in != orjson.dumps(obj).count(b":")


def _decode_json_slowly(body: bytes, kind: str) -> tuple[Any, list[str]]:
    """orjson refused the body: it may still be JSON that orjson does not take (integers beyond
    64 bits); otherwise report the syntax error as Go's encoding/json words it."""
    try:
        return _json_with_duplicates(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        reason = "couldn't get version/kind; json parse error: " + go_json_error(err)
        raise _malformed(body, kind, reason) from None


def _json_with_duplicates(body: bytes) -> tuple[Any, list[str]]:
    repeated: dict[int, list[str]] = {}
    keep_alive: list[dict] = []  # ids are only unique while the dicts live

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict:
        d = dict(pairs)
        if len(d) != len(pairs):
            repeated[id(d)] = _repeated_keys(k for k, _ in pairs)
            keep_alive.append(d)
        return d

    text = body.decode() if isinstance(body, bytes) else body

    def no_constants(name: str) -> None:
        # Python's json takes NaN and Infinity; JSON (and Go) do not
        raise json.JSONDecodeError("Expecting value", text, max(text.find(name), 0))

    obj = json.loads(text, object_pairs_hook=pairs_hook, parse_constant=no_constants)
    paths: list[str] = []
    if repeated:
        _collect_duplicates(obj, "", repeated, paths)
    return obj, paths


def _repeated_keys(keys: Any) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for key in keys:
        if key in seen and key not in out:
            out.append(key)
        seen.add(key)
    return out


def _collect_duplicates(value: Any, path: str, repeated: dict[int, list[str]],
                        out: list[str]) -> None:
    if isinstance(value, dict):
        for key in repeated.get(id(value), ()):
            out.append(DuplicateField(_join(path, key), key))
        for key, child in value.items():
            if isinstance(child, (dict, list)):
                _collect_duplicates(child, _join(path, key), repeated, out)
    elif isinstance(value, list):
        for i, child in enumerate(value):
            if isinstance(child, (dict, list)):
                _collect_duplicates(child, f"{path}[{i}]", repeated, out)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- YAML ------------------------------------------------------------------------------------

_YamlBase: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _YamlLoader(_YamlBase):  # type: ignore[misc, valid-type]
    """YAML 1.1 like go-yaml v2 (what sigs.k8s.io/yaml uses), except that timestamps stay the
    strings they were written as: YAMLToJSON never turns them into anything else."""


_YamlLoader.add_constructor("tag:yaml.org,2002:timestamp",
                            lambda loader, node: loader.construct_scalar(node))

_MAX_YAML_DEPTH = 10_000  # an alias cycle must not recurse forever


def _decode_yaml(body: bytes, kind: str) -> tuple[Any, list[str]]:
    loader = _YamlLoader(body)
    try:
        node = loader.get_node() if loader.check_node() else None
        if node is None:
            return None, []
        duplicates: list[str] = []
        return _build_yaml(loader, node, "", duplicates, 0), duplicates
    except yaml.YAMLError as err:
        raise _malformed(body, kind, _go_yaml_error(err)) from None
    finally:
        loader.dispose()


def _build_yaml(loader: Any, node: Any, path: str, duplicates: list[str], depth: int) -> Any:
    if depth > _MAX_YAML_DEPTH:
        raise yaml.YAMLError("exceeded max depth")
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<` merge keys in place
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _yaml_key(loader.construct_object(key_node, deep=True))
            child = _join(path, key)
            if key in out:
                duplicates.append(DuplicateField(child, key, key_node.start_mark.line + 1))
            out[key] = _build_yaml(loader, value_node, child, duplicates, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build_yaml(loader, item, f"{path}[{i}]", duplicates, depth + 1)
                for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _yaml_key(key: Any) -> str:
    """JSON keys are strings; sigs.k8s.io/yaml writes other scalar keys the way Go prints them."""
    if isinstance(key, str):
        return key
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key)


# --- malformed bodies -----------------------------------------------------------------------


def _malformed(body: bytes, kind: str, reason: str) -> StatusError:
    if not kind:
        return bad_request(reason)
    return bad_request(f"the object provided is unrecognized (must be of type {kind}): "
                       f"{reason} ({_summarize(body)})")


def _summarize(body: bytes, limit: int = 30) -> str:
    """apiserver's summarizeData: the start of the body, as text if it looks like JSON."""
    if not body:
        return "<empty>"
    if body[:1] == b"{":
        text = body[:limit].decode("utf-8", "replace")
        return text + " ..." if len(body) > limit else text
    return body[:limit].hex() + (" ..." if len(body) > limit else "")


_PY_TO_GO_JSON = {
    "Expecting value": "looking for beginning of value",
    "Expecting property name enclosed in double quotes": "looking for beginning of object key string",
    "Expecting ':' delimiter": "after object key",
    "Extra data": "after top-level value",
}


def go_json_error(err: Exception) -> str:
    """A Python JSON syntax error in the words of Go's encoding/json."""
    if not isinstance(err, json.JSONDecodeError):
        return "invalid character in input"
    pos = err.pos
    if pos >= len(err.doc.rstrip()):
        return "unexpected end of JSON input"
    char = err.doc[pos]
    if err.msg in _PY_TO_GO_JSON:
        context = _PY_TO_GO_JSON[err.msg]
    elif err.msg == "Expecting ',' delimiter":
        context = ("after object key:value pair" if _innermost_bracket(err.doc, pos) == "{"
                   else "after array element")
    elif err.msg.startswith("Invalid control character"):
        context = "in string literal"
    else:
        context = "looking for beginning of value"
    return f"invalid character {_go_char(char)} {context}"


def _innermost_bracket(doc: str, pos: int) -> str:
    stack: list[str] = []
    in_string = escaped = False
    for ch in doc[:pos]:
        if in_string:
            escaped = not escaped and ch == "\\"
            if ch == '"' and not escaped:
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append(ch)
        elif ch in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def _go_char(char: str) -> str:
    if char == "'":
        return "'\\''"
    if char == '"':
        return "'\"'"
    return "'" + json.dumps(char)[1:-1] + "'"


def _go_yaml_error(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    problem = problem.replace(" here", " in this context")
    if mark is not None:
        return f"yaml: line {mark.line + 1}: {problem}"
    return f"yaml: {problem}"


# --------------------------------------------------------------------------------------------
# unknown fields


def prune_unknown(obj: Any, node: dict | None, schemas: Schemas, path: str = "") -> list[str]:
    """Remove, in place, every field of ``obj`` its schema does not declare; return their paths.

    ``node`` is the schema of ``obj``: a built-in kind's definition (``schemas.for_kind``) or a
    CustomResourceDefinition version's ``openAPIV3Schema``. ``schemas`` resolves ``$ref`` and
    supplies ObjectMeta for ``metadata``. At the root (``path == ""``) and in an
    ``x-kubernetes-embedded-resource``, ``apiVersion`` and ``kind`` are always kept and
    ``metadata`` is pruned as ObjectMeta whatever the schema says, as upstream's structural
    pruning does. ``x-kubernetes-preserve-unknown-fields`` keeps what is not declared but still
    prunes inside what is; ``additionalProperties`` describes every other key.
    """
    dropped: list[str] = []
    _prune(obj, node, schemas, path, path == "", dropped)
    return dropped


def _prune(value: Any, node: dict | None, schemas: Schemas, path: str, resource_root: bool,
           dropped: list[str]) -> None:
    if isinstance(value, dict):
        _prune_object(value, _resolve(schemas, node), schemas, path, resource_root, dropped)
    elif isinstance(value, list):
        resolved = _resolve(schemas, node)
        items = resolved.get("items")
        if isinstance(items, dict) and node_type(resolved) == "array":
            for i, item in enumerate(value):
                if isinstance(item, (dict, list)):
                    _prune(item, items, schemas, f"{path}[{i}]", False, dropped)


def _resolve(schemas: Schemas, node: Any) -> dict:
    """``schemas.resolve``, tolerant of the malformed nodes a stored CRD schema may hold."""
    if not isinstance(node, dict):
        return {}
    try:
        return schemas.resolve(node)
    except KeyError:  # a $ref that names no definition
        return {}


def _prune_object(value: dict, node: dict, schemas: Schemas, path: str, resource_root: bool,
                  dropped: list[str]) -> None:
    if node_type(node) not in ("object", None):
        return  # a type mismatch is validation's to report
    props = node.get("properties")
    props = props if isinstance(props, dict) else {}
    extra = node.get("additionalProperties")
    extra = extra if isinstance(extra, (dict, bool)) else None
    keep_unknown = extra is True or preserves_unknown(node)
    resource_root = resource_root or bool(node.get("x-kubernetes-embedded-resource"))
    if not props and extra is None and keep_unknown and not resource_root:
        return  # free-form: nothing below is known, so nothing can be unknown
    for key in list(value):
        child_path = _join(path, key)
        child = value[key]
        if resource_root and key in ("apiVersion", "kind"):
            continue
        if resource_root and key == "metadata":
            meta = schemas.definitions.get(OBJECT_META)
            if meta is not None:
                _prune(child, meta, schemas, child_path, False, dropped)
            continue
        sub = props.get(key)
        if not isinstance(sub, dict):
            sub = extra if isinstance(extra, dict) else None
        if sub is not None:
            if isinstance(child, (dict, list)):
                _prune(child, sub, schemas, child_path, False, dropped)
        elif not keep_unknown:
            del value[key]
            dropped.append(child_path)


# --------------------------------------------------------------------------------------------
# field validation


def field_validation_directive(value: str | None, options_kind: str = "CreateOptions") -> str:
    """The effective ``fieldValidation`` directive: "Warn" when unset, as upstream defaults it.
    Anything but "", "Ignore", "Warn" and "Strict" is rejected like upstream rejects an invalid
    ``CreateOptions``/``UpdateOptions``/``PatchOptions``: 422 Invalid."""
    value = value or ""
    if value not in _DIRECTIVES:
        raise invalid_error(options_kind, "", [
            not_supported("fieldValidation", value, list(_DIRECTIVES))], group="meta.k8s.io")
    return value or WARN


def apply_field_validation(directive: str | None, unknown: list[str], duplicates: list[str],
                           *, kind: str, version: str, options_kind: str = "CreateOptions",
                           custom_resource: bool = False) -> list[str]:
    """Act on the strict-decoding findings as ``directive`` asks; return ``Warning`` texts.

    ``kind``/``version`` are those the body declared (``Deployment``, ``v1``) and name the
    object in the Strict error. ``options_kind`` names the options object an invalid directive
    is reported against. Upstream lists a typed object's findings in the order its decoder met
    them — unknown fields first in practice — while a custom resource's duplicate keys (found by
    the JSON decoder) come before its pruned fields; ``custom_resource`` selects the latter.

    - "Ignore": nothing.
    - "Warn" (also the default): one warning per finding, e.g. ``unknown field "spec.foo"``.
    - "Strict": raise 400 BadRequest, ``Deployment in version "v1" cannot be handled as a
      Deployment: strict decoding error: unknown field "spec.foo", duplicate field "x"``, with
      each finding also listed in ``details.causes``.
    """
    directive = field_validation_directive(directive, options_kind)
    if directive == IGNORE or not (unknown or duplicates):
        return []
    messages, causes = _findings(unknown, duplicates, custom_resource)
    if directive == WARN:
        # a Warning header cannot carry a line break; Go's header writer makes it a space
        return [message.replace("\n", " ") for message in messages]
    raise StatusError(
        400, "BadRequest",
        f"{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: "
        + ", ".join(messages),
        details={"causes": causes})


def _findings(unknown: list[str], duplicates: list[str],
              custom_resource: bool) -> tuple[list[str], list[dict[str, str]]]:
    """The error texts in upstream's order, and one cause per field."""
    in_yaml = [d for d in duplicates if getattr(d, "line", None) is not None]
    in_json = [d for d in duplicates if getattr(d, "line", None) is None]
    unknown_texts = [f'unknown field "{p}"' for p in unknown]
    duplicate_texts = [f'duplicate field "{p}"' for p in in_json]
    if custom_resource:
        messages = duplicate_texts + unknown_texts
    else:
        messages = unknown_texts + duplicate_texts
    if in_yaml:
        # go-yaml reports all of a document's repeated keys as one error, and the YAML check
        # runs before the JSON decoder's
        lines = [f'line {d.line}: key "{d.key}" already set in map' for d in in_yaml]
        messages.insert(0, "yaml: unmarshal errors:\n  " + "\n  ".join(lines))
    causes = [{"reason": "FieldValueUnknown", "message": f'unknown field "{p}"', "field": p}
              for p in unknown]
    causes += [{"reason": "FieldValueDuplicate", "message": f'duplicate field "{p}"',
                "field": str(p)} for p in duplicates]
    return messages, causes
