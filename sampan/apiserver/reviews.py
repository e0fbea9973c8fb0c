"""Reviews: objects computed on request and never stored — who am I (SelfSubjectReview),
may I (SelfSubjectAccessReview, used by ``kubectl auth can-i``), may they (SubjectAccessReview),
and whose token is this (TokenReview)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from sampan.api import errors
from sampan.api.registry import Resource
from sampan.apiserver.auth import ALLOW, Attributes, UserInfo
from sampan.apiserver.requestinfo import RequestInfo
from sampan.apiserver.rest import Context
from sampan.apiserver.resources import json_response, read_body

if TYPE_CHECKING:
    from sampan.apiserver.server import APIServer


def _user_status(user: UserInfo) -> dict[str, Any]:
    info: dict[str, Any] = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        info["uid"] = user.uid
    if user.extra:
        info["extra"] = user.extra
    return info


class Reviews:
    def __init__(self, api: "APIServer"):
        self.api = api

    async def create(self, request: web.Request, info: RequestInfo, resource: Resource,
                     ctx: Context) -> web.Response:
        body = await read_body(request)
        review, _ = self.api.codec.decode(body, request.headers.get("Content-Type", "application/json"),
                                          resource)
        if not isinstance(review, dict):
            raise errors.bad_request(f"invalid {resource.kind}")
        review["apiVersion"], review["kind"] = resource.api_version, resource.kind
        review.setdefault("metadata", {})
        spec = review.get("spec") or {}
        kind = resource.kind
        if kind == "SelfSubjectReview":
            review["status"] = {"userInfo": _user_status(ctx.user)}
        elif kind == "TokenReview":
            user = self.api.authn.authenticate_header("Bearer " + str(spec.get("token", "")))
            review["status"] = ({"authenticated": True, "user": _user_status(user)}
                                if user else {"authenticated": False})
        elif kind in ("SelfSubjectAccessReview", "SubjectAccessReview", "LocalSubjectAccessReview"):
            user = ctx.user if kind == "SelfSubjectAccessReview" else UserInfo(
                spec.get("user", ""), spec.get("uid", ""), tuple(spec.get("groups") or ()))
            if kind == "LocalSubjectAccessReview":
                spec.setdefault("resourceAttributes", {})["namespace"] = info.namespace
            review["status"] = self._access(user, spec)
        elif kind == "SelfSubjectRulesReview":
            review["status"] = self._rules(ctx.user, spec.get("namespace", ""))
        return json_response(review, 201)

    def _access(self, user: UserInfo, spec: dict[str, Any]) -> dict[str, Any]:
        res = spec.get("resourceAttributes")
        non = spec.get("nonResourceAttributes")
        if res is not None:
            attrs = Attributes(user, res.get("verb", ""), True, res.get("group", ""),
                               res.get("version", ""), res.get("resource", ""),
                               res.get("subresource", ""), res.get("namespace", ""),
                               res.get("name", ""))
        elif non is not None:
            attrs = Attributes(user, non.get("verb", ""), False, path=non.get("path", ""))
        else:
            raise errors.invalid_error("SelfSubjectAccessReview", "", [errors.required(
                "spec.resourceAttributes", "exactly one of nonResourceAttributes or resourceAttributes must be specified")],
                "authorization.k8s.io")
        decision, reason = self.api.authz.authorize(attrs)
        status: dict[str, Any] = {"allowed": decision == ALLOW}
        if reason:
            status["reason"] = reason
        return status

    def _rules(self, user: UserInfo, namespace: str) -> dict[str, Any]:
        if self.api.authz.authorize(Attributes(user, "*", True, "*", "*", "*", "", namespace))[0] == ALLOW:
            return {"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    "incomplete": False}
        resource_rules, non_resource_rules = self.api.rbac.rules_for(user, namespace)
        return {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
                "incomplete": False}
