"""API errors in the shape upstream returns them: a ``metav1.Status`` with reason and causes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Cause types (``metav1.CauseType``) as field/errors.go names them.
REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
FORBIDDEN = "FieldValueForbidden"
DUPLICATE = "FieldValueDuplicate"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
TYPE_INVALID = "FieldValueTypeInvalid"
NOT_FOUND = "FieldValueNotFound"
UNKNOWN_FIELD = "FieldValueUnknown"  # strict decoding: "unknown field"
DUPLICATE_FIELD = "FieldValueDuplicate"
INTERNAL = "InternalError"

_DETAIL = {
    REQUIRED: "Required value",
    INVALID: "Invalid value",
    NOT_SUPPORTED: "Unsupported value",
    FORBIDDEN: "Forbidden",
    DUPLICATE: "Duplicate value",
    TOO_LONG: "Too long",
    TOO_MANY: "Too many",
    TYPE_INVALID: "Invalid value",
    NOT_FOUND: "Not found",
    INTERNAL: "Internal error",
}


def _render(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        import orjson

        return orjson.dumps(value).decode()
    return str(value)


_NO_VALUE = object()


@dataclass(slots=True)
class FieldError:
    """One invalid field, like ``field.Error`` upstream."""

    type: str
    field: str  # "spec.template.spec.containers[0].image"
    detail: str = ""
    value: Any = _NO_VALUE

    def message(self) -> str:
        head = _DETAIL.get(self.type, "Invalid value")
        if self.type in (REQUIRED, FORBIDDEN, TOO_MANY, INTERNAL) or self.value is _NO_VALUE:
            text = head
        else:
            text = f"{head}: {_render(self.value)}"
        return f"{self.field}: {text}: {self.detail}" if self.detail else f"{self.field}: {text}"

    def cause(self) -> dict[str, Any]:
        body = self.message()
        # The cause's message leaves out the field path (it is in "field").
        prefix = f"{self.field}: "
        if body.startswith(prefix):
            body = body[len(prefix):]
        return {"reason": self.type, "message": body, "field": self.field}


def required(field: str, detail: str = "") -> FieldError:
    return FieldError(REQUIRED, field, detail)


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError(INVALID, field, detail, value)


def not_supported(field: str, value: Any, valid: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(f'"{v}"' for v in valid)
    return FieldError(NOT_SUPPORTED, field, detail, value)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError(FORBIDDEN, field, detail)


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError(DUPLICATE, field, "", value)


def too_long(field: str, value: Any, max_length: int) -> FieldError:
    return FieldError(TOO_LONG, field, f"may not be more than {max_length} bytes", value)


def type_invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError(TYPE_INVALID, field, detail, value)


def not_found(field: str, value: Any) -> FieldError:
    return FieldError(NOT_FOUND, field, "", value)


class StatusError(Exception):
    """An error the API returns as a ``metav1.Status``."""

    def __init__(self, code: int, reason: str, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        }
        if self.reason:
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(resource: str, name: str, group: str = "") -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "kind": resource}
    if group:
        d["group"] = group
    return d


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found_error(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
                       details=_details(resource, name, group))


def already_exists(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(409, "AlreadyExists",
                       f'{_qualified(resource, group)} "{name}" already exists',
                       details=_details(resource, name, group))


def conflict(resource: str, name: str, group: str = "", why: str = "") -> StatusError:
    why = why or ("the object has been modified; please apply your changes to the latest "
                  "version and try again")
    return StatusError(409, "Conflict",
                       f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
                       details=_details(resource, name, group))


def invalid_error(kind: str, name: str, errors: list[FieldError], group: str = "") -> StatusError:
    details = {"name": name, "kind": kind, "causes": [e.cause() for e in errors]}
    if group:
        details["group"] = group
    listing = [e.message() for e in errors]
    aggregate = listing[0] if len(listing) == 1 else "[" + ", ".join(listing) + "]"
    return StatusError(422, "Invalid", f'{kind}{"." + group if group else ""} "{name}" is invalid: {aggregate}',
                       details=details)


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def forbidden_error(message: str) -> StatusError:
    return StatusError(403, "Forbidden", message)


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def method_not_supported(resource: str, verb: str) -> StatusError:
    return StatusError(405, "MethodNotAllowed",
                       f"{verb} is not supported on resources of kind \"{resource}\"")


def too_large(message: str = "Request entity too large: limit is 3145728") -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", message)


def unsupported_media_type(content_type: str) -> StatusError:
    return StatusError(415, "UnsupportedMediaType",
                       "the body of the request was in an unknown format - accepted media types "
                       "include: application/json-patch+json, application/merge-patch+json, "
                       "application/apply-patch+yaml, application/strategic-merge-patch+json")


def unsupported_body(content_type: str) -> StatusError:
    return StatusError(415, "UnsupportedMediaType",
                       f'the body of the request was in an unknown format - accepted media types '
                       f'include: application/json, application/yaml, application/vnd.kubernetes.protobuf'
                       f' (not "{content_type}")')


def internal_error(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")


def service_unavailable(message: str) -> StatusError:
    return StatusError(503, "ServiceUnavailable", message)


def timeout(message: str) -> StatusError:
    return StatusError(504, "Timeout", message)


def too_many_requests(message: str, retry_after: int = 1) -> StatusError:
    return StatusError(429, "TooManyRequests", message,
                       details={"retryAfterSeconds": retry_after})


class GoValue:
    """A bad value already printed the way upstream's ``field.Error`` prints it: Go's ``%#v`` of
    a typed value (``map[string]string{"app":"x"}``) or a ``String()`` method
    (``&LabelSelector{...}``, an int-or-string, a quantity). ``FieldError`` renders it as is."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"GoValue({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoValue) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def too_long_bytes(field: str, max_length: int) -> FieldError:
    """``field.TooLong``: upstream leaves the (long) value out of the message."""
    return FieldError(TOO_LONG, field, f"must have at most {max_length} bytes")


def too_long_max_length(field: str, max_length: int) -> FieldError:
    """``field.TooLongMaxLength``, what CustomResource ``maxLength`` reports."""
    return FieldError(TOO_LONG, field, f"may not be longer than {max_length}")


def too_many(field: str, actual: int, max_items: int) -> FieldError:
    """``field.TooMany``: "Too many: 4: must have at most 3 items". ``FieldError.message`` leaves
    a TooMany value out, so the count travels in the detail."""
    return FieldError(TOO_MANY, field, f"{actual}: must have at most {max_items} items")
