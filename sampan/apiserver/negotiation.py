"""Content negotiation: what representation a client asked for in ``Accept``.

kubectl asks for ``application/json;as=Table;v=v1;g=meta.k8s.io,application/json``; informers
of metadata-only clients ask for ``as=PartialObjectMetadata``; client-go may prefer protobuf and
fall back to JSON, which is the only wire encoding Sampan speaks besides YAML.
"""

from __future__ import annotations

from dataclasses import dataclass

JSON, YAML, TABLE, METADATA, PROTOBUF = "json", "yaml", "table", "metadata", "protobuf"


@dataclass(frozen=True, slots=True)
class Representation:
    form: str  # JSON, YAML, TABLE or METADATA
    version: str = "v1"  # meta.k8s.io version for Table / PartialObjectMetadata


_DEFAULT = Representation(JSON)


def _params(parts: list[str]) -> dict[str, str]:
    out = {}
    for p in parts:
        k, _, v = p.strip().partition("=")
        out[k.strip().lower()] = v.strip().strip('"')
    return out


def negotiate(accept: str | None) -> Representation | None:
    """The first acceptable representation, or None when nothing offered is acceptable."""
    if not accept:
        return _DEFAULT
    protobuf = False
    for clause in accept.split(","):
        media, *rest = clause.split(";")
        media = media.strip().lower()
        params = _params(rest)
        if params.get("q") == "0":
            continue
        as_ = params.get("as", "")
        if media in ("application/json", "*/*", "application/*", "application/json-seq"):
            if not as_:
                return _DEFAULT
            if params.get("g") != "meta.k8s.io" or params.get("v") not in ("v1", "v1beta1"):
                continue
            if as_ == "Table":
                return Representation(TABLE, params["v"])
            if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
                return Representation(METADATA, params["v"])
            continue
        if media in ("application/yaml", "text/yaml") and not as_:
            return Representation(YAML)
        if media == "application/vnd.kubernetes.protobuf" and not as_:
            protobuf = True
    # JSON is cheaper for us to produce, so protobuf is chosen only when nothing else will do.
    return Representation(PROTOBUF) if protobuf else None
