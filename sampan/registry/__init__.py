"""Sampan's image registry: an OCI Distribution Spec v1.1 server (push, pull, tags,
catalog, delete, referrers) over filesystem storage, with Docker-style token auth."""

from sampan.registry.app import Registry, make_app
from sampan.registry.auth import Access, TokenAuth, kubernetes_token_authenticator, parse_scope
from sampan.registry.errors import RegistryError
from sampan.registry.storage import GCResult, Manifest, Storage, Upload

__all__ = [
    "Access", "GCResult", "Manifest", "Registry", "RegistryError", "Storage", "TokenAuth",
    "Upload", "kubernetes_token_authenticator", "make_app", "parse_scope",
]
