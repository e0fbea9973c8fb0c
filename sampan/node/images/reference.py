"""Image references the way docker and containerd read them.

``busybox`` → ``docker.io/library/busybox:latest``; ``host:5000/team/app:v1``;
``app@sha256:<hex>``. The grammar is distribution/reference's; errors carry its messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALNUM + rf"(?:{_SEPARATOR}{_ALNUM})*"
_REMOTE_NAME = _PATH_COMPONENT + rf"(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[(?:[a-fA-F0-9:]+)\])"
_DOMAIN = _HOST + r"(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"

_REFERENCE = re.compile(
    rf"((?:{_DOMAIN}/)?{_REMOTE_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_NAME = re.compile(rf"(?:({_DOMAIN})/)?({_REMOTE_NAME})", re.ASCII)
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")
_DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}


class ReferenceError(ValueError):
    """A string that is not a valid image reference; the message is distribution's."""


@dataclass(frozen=True, slots=True)
class Reference:
    domain: str                 # "docker.io", "127.0.0.1:5000"
    path: str                   # "library/busybox"
    tag: str = ""               # "" when only a digest was given
    digest: str = ""            # "sha256:<hex>" or ""

    @property
    def repository(self) -> str:
        """``domain/path``: the name without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def tagged(self) -> str:
        return f"{self.repository}:{self.tag}" if self.tag else ""

    @property
    def digested(self) -> str:
        return f"{self.repository}@{self.digest}" if self.digest else ""

    def __str__(self) -> str:
        s = self.repository
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def familiar_name(self) -> str:
        """``docker.io/library/redis`` → ``redis``; ``docker.io/me/app`` → ``me/app``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        rest = self.path.removeprefix(OFFICIAL_PREFIX)
        return rest if rest != self.path and "/" not in rest else self.path

    def familiar(self) -> str:
        s = self.familiar_name()
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def with_tag(self, tag: str) -> Reference:
        if not re.fullmatch(_TAG, tag, re.ASCII):
            raise ReferenceError("invalid tag format")
        return Reference(self.domain, self.path, tag, "")

    def with_digest(self, digest: str) -> Reference:
        _check_digest(digest)
        return Reference(self.domain, self.path, "", digest)


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep:
        return DEFAULT_DOMAIN, OFFICIAL_PREFIX + name
    if first == "localhost":
        domain, remote = first, rest
    elif first == LEGACY_DEFAULT_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, rest
    elif any(c in first for c in ".:") or first.lower() != first:
        domain, remote = first, rest
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_PREFIX + remote
    return domain, remote


def _check_digest(digest: str) -> None:
    if not re.fullmatch(_DIGEST, digest, re.ASCII):
        raise ReferenceError("invalid digest format")
    algorithm, _, hexpart = digest.partition(":")
    if algorithm not in _DIGEST_HEX:
        raise ReferenceError("unsupported digest algorithm")
    if len(hexpart) != _DIGEST_HEX[algorithm] or hexpart != hexpart.lower():
        raise ReferenceError("invalid checksum digest format")


def parse_normalized(s: str) -> Reference:
    """distribution's ParseNormalizedNamed: a familiar or full name; tag and digest as given."""
    if _IDENTIFIER.fullmatch(s):
        raise ReferenceError(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_domain(s)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise ReferenceError(
            f"invalid reference format: repository name ({remote}) must be lowercase")
    full = f"{domain}/{remainder}"
    m = _REFERENCE.fullmatch(full)
    if m is None:
        lowered = full.lower()
        if lowered != full and _REFERENCE.fullmatch(lowered):
            raise ReferenceError("repository name must be lowercase")
        raise ReferenceError("invalid reference format")
    name, tag, digest = m.group(1), m.group(2) or "", m.group(3) or ""
    nm = _NAME.fullmatch(name)
    assert nm is not None
    dom, path = nm.group(1) or "", nm.group(2)
    if len(path) > NAME_MAX:
        raise ReferenceError(f"repository name must not be more than {NAME_MAX} characters")
    if digest:
        _check_digest(digest)
    return Reference(dom, path, tag, digest)


def parse(s: str) -> Reference:
    """A reference as the kubelet and containerd resolve it: normalised, ``:latest`` added when
    neither a tag nor a digest is given (distribution's ParseDockerRef keeps both if present)."""
    if not s:
        raise ReferenceError("repository name must have at least one component")
    ref = parse_normalized(s)
    if not ref.tag and not ref.digest:
        ref = Reference(ref.domain, ref.path, DEFAULT_TAG, "")
    return ref


def normalize(s: str) -> str:
    """``busybox`` → ``docker.io/library/busybox:latest``."""
    return str(parse(s))


def is_image_id(s: str) -> str | None:
    """``sha256:<hex>`` or a bare 64-hex id → the id with its algorithm; else None."""
    if _IDENTIFIER.fullmatch(s):
        return "sha256:" + s
    if s.startswith("sha256:") and _IDENTIFIER.fullmatch(s[7:]):
        return s
    return None
