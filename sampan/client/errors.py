"""Errors the API server answers with, as ``metav1.Status`` objects (apimachinery's
``k8s.io/apimachinery/pkg/api/errors`` on the client side)."""

from __future__ import annotations

from typing import Any

_REASON_FOR_CODE = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """A request the API server refused; ``status`` is the ``metav1.Status`` it sent."""

    def __init__(self, status: dict[str, Any]):
        self.status = status
        super().__init__(f"{self.code} {self.reason}: {self.message}")

    @property
    def code(self) -> int:
        return int(self.status.get("code") or 0)

    @property
    def reason(self) -> str:
        return self.status.get("reason") or _REASON_FOR_CODE.get(self.code, "Unknown")

    @property
    def message(self) -> str:
        return self.status.get("message") or ""

    @property
    def details(self) -> dict[str, Any]:
        return self.status.get("details") or {}

    @property
    def not_found(self) -> bool:
        return self.code == 404

    @property
    def conflict(self) -> bool:
        return self.code == 409 and self.reason == "Conflict"

    @property
    def already_exists(self) -> bool:
        return self.code == 409 and self.reason == "AlreadyExists"

    @property
    def method_not_supported(self) -> bool:
        return self.code == 405


class ResourceExpiredError(ApiError):
    """410 Gone: the resourceVersion (or continue token) is older than the server keeps.
    A reflector answers it by listing again."""


def status_for(code: int, message: str, reason: str | None = None) -> dict[str, Any]:
    """A ``metav1.Status`` for an answer that did not carry one (a proxy's text, a 502)."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason or _REASON_FOR_CODE.get(code, "Unknown"),
            "code": code}


def error_from_status(status: dict[str, Any]) -> ApiError:
    if int(status.get("code") or 0) == 410 or status.get("reason") in ("Expired", "Gone"):
        return ResourceExpiredError(status)
    return ApiError(status)
