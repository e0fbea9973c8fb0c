"""The registry's errors: the OCI distribution spec's error codes with the HTTP status
distribution (the reference implementation) answers them with."""

from __future__ import annotations

from typing import Any

# code -> (HTTP status, default message)
CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "TAG_INVALID": (400, "manifest tag did not match URI"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "The operation is unsupported."),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "RANGE_INVALID": (416, "invalid content range"),
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
}


class RegistryError(Exception):
    """One spec error (plus ``more`` of them in the same answer); ``status`` overrides the
    code's usual HTTP status (e.g. 413 for a manifest too large)."""

    def __init__(self, code: str, message: str | None = None, detail: Any = None,
                 *, status: int | None = None, headers: dict[str, str] | None = None,
                 more: list[RegistryError] | None = None):
        default_status, default_message = CODES[code]
        super().__init__(message or default_message)
        self.code = code
        self.message = message or default_message
        self.detail = detail
        self.status = status or default_status
        self.headers = headers or {}
        self.more = more or []

    def _error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return error

    def body(self) -> dict[str, Any]:
        """The spec's JSON error document (several errors when ``more`` holds others)."""
        return {"errors": [self._error()] + [e._error() for e in self.more]}
