"""Authentication (who is asking) and authorization (may they).

Authenticators turn a request's credentials into a ``UserInfo``; the chain tries each in turn.
Authorization decides on ``Attributes`` the way upstream's authorizer interface does, so RBAC
can slot in beside the ``system:masters`` rule.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Protocol

MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict, compare=False, hash=False)


ANONYMOUS = UserInfo("system:anonymous", groups=(UNAUTHENTICATED,))


@dataclass(frozen=True, slots=True)
class Attributes:
    """What a request wants to do, as upstream's authorizer.Attributes describes it."""

    user: UserInfo
    verb: str  # get list watch create update patch delete deletecollection, or an HTTP verb
    resource_request: bool
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


class Authenticator(Protocol):
    def authenticate_token(self, token: str) -> UserInfo | None: ...


class StaticTokens:
    """Bearer tokens known in advance (the admin token, node bootstrap tokens)."""

    def __init__(self) -> None:
        self._tokens: dict[str, UserInfo] = {}

    def add(self, token: str, user: UserInfo) -> None:
        self._tokens[token] = user

    def authenticate_token(self, token: str) -> UserInfo | None:
        user = self._tokens.get(token)
        if user is not None:
            return user
        # Constant-time comparison is what matters for secrets of unequal prefixes; the dict
        # lookup above is on a hash, so only a rehash collision could reach here with a match.
        for known, candidate in self._tokens.items():
            if hmac.compare_digest(known, token):
                return candidate
        return None


class AuthenticatorChain:
    def __init__(self, *authenticators: Authenticator):
        self.authenticators = list(authenticators)

    def authenticate_header(self, authorization: str | None) -> UserInfo | None:
        """The user behind an ``Authorization`` header, or None (→ 401)."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        token = token.strip()
        for authenticator in self.authenticators:
            user = authenticator.authenticate_token(token)
            if user is not None:
                return user
        return None


ALLOW, DENY, NO_OPINION = "allow", "deny", "no-opinion"


class Authorizer(Protocol):
    def authorize(self, attrs: Attributes) -> tuple[str, str]:
        """(decision, reason)."""
        ...


class MastersAuthorizer:
    """Members of ``system:masters`` may do anything, as upstream hard-wires it."""

    def authorize(self, attrs: Attributes) -> tuple[str, str]:
        if MASTERS in attrs.user.groups:
            return ALLOW, ""
        return NO_OPINION, ""


class AuthorizerChain:
    def __init__(self, *authorizers: Authorizer):
        self.authorizers = list(authorizers)

    def authorize(self, attrs: Attributes) -> tuple[str, str]:
        for authorizer in self.authorizers:
            decision, reason = authorizer.authorize(attrs)
            if decision != NO_OPINION:
                return decision, reason
        return DENY, ""


def forbidden_message(attrs: Attributes) -> str:
    """Upstream's wording for a denied request."""
    who = f'User "{attrs.user.name}"'
    if not attrs.resource_request:
        return f'{who} cannot {attrs.verb} path "{attrs.path}"'
    resource = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
    group = f'in API group "{attrs.group}"'
    what = f'resource "{resource}" {group}'
    scope = f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
    return f"{who} cannot {attrs.verb} {what}{scope}"
