#!/usr/bin/env python3
"""Generate ``sampan/api/data/protobuf_schema.json``: the Kubernetes protobuf wire contract.

Built-in kinds travel as Kubernetes protobuf (client-go sends it by default since 1.35). The
wire layout of every message is in upstream's ``generated.proto`` files; what the proto cannot
say is how a field looks in the JSON form, which ``sampan.api.protobuf`` must produce. That comes
from the Go struct the message was generated from:

- the JSON name (``$ref`` and ``x-kubernetes-*`` differ from the proto names);
- whether a zero value is still written in JSON (a pointer, or a field without ``omitempty``:
  ``replicas: 0`` must survive, ``minReadySeconds: 0`` must not appear);
- whether the field is embedded inline (``Volume`` carries ``VolumeSource``'s fields itself).

The kinds come from each package's ``register.go``. Repositories are read from the bare git
snapshots brought in by the search tool's ``fetch`` (``/work/.mirror/<owner>+<name>/repo``);
nothing upstream is copied, only this table derived from it.

Usage: ``python scripts/gen_protobuf_schema.py [--minor 37] [--mirror DIR] [--out FILE]``
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "sampan" / "api" / "data" / "protobuf_schema.json"
DEFAULT_MIRROR = Path("/work/.mirror")

META_V1 = "k8s.io.apimachinery.pkg.apis.meta.v1"

# Package directories read from each repository; None means every directory holding a
# generated.proto. testapigroup, runtime/schema and the custom/external metrics adapters'
# groups are left out: nothing serves them.
SOURCES: dict[str, list[str] | None] = {
    "kubernetes/api": None,
    "kubernetes/apimachinery": [
        "pkg/apis/meta/v1",
        "pkg/apis/meta/v1beta1",
        "pkg/runtime",
        "pkg/util/intstr",
        "pkg/api/resource",
    ],
    "kubernetes/apiextensions-apiserver": [
        "pkg/apis/apiextensions/v1",
        "pkg/apis/apiextensions/v1beta1",
    ],
    "kubernetes/metrics": ["pkg/apis/metrics/v1beta1"],
}

SCALARS = frozenset({
    "double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
    "fixed32", "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes",
})

# The scalar types sampan/api/protobuf.py reads and writes; another one fails the generation.
CODEC_SCALARS = frozenset({"string", "bytes", "int32", "int64", "bool", "double"})

REPEATED, KEEP_ZERO, INLINE = 1, 2, 4

FIELD_FORMAT = (
    "packages[package][message] = [[number, jsonName, type, flags], ...]; type is a scalar, "
    "a message (bare name = same package) or [mapKey, mapValue]; flags: 1 repeated, "
    "2 keepZero (Go pointer or no omitempty: a present zero value is kept in JSON), "
    "4 inline (the message's fields sit in the parent JSON object)"
)


# --------------------------------------------------------------------------------------------
# git


@dataclass(frozen=True)
class Checkout:
    repo: str
    git_dir: Path
    ref: str
    commit: str

    def show(self, path: str) -> str:
        return _git(self.git_dir, "show", f"{self.commit}:{path}")

    def files(self) -> list[str]:
        return _git(self.git_dir, "ls-tree", "-r", "--name-only", self.commit).splitlines()


def _git(git_dir: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(git_dir), *args], check=True,
                          capture_output=True, text=True).stdout


def choose_ref(git_dir: Path, minor: int) -> str:
    """The release branch of Kubernetes 1.<minor>, else its newest release tag, else HEAD."""
    branches = _git(git_dir, "branch", "--list", "--format=%(refname:short)").split()
    if f"release-1.{minor}" in branches:
        return f"release-1.{minor}"
    release = re.compile(rf"^v0\.{minor}\.(\d+)$")
    patches = [(int(m.group(1)), tag) for tag in _git(git_dir, "tag", "--list").split()
               if (m := release.match(tag))]
    return max(patches)[1] if patches else "HEAD"


def checkout(mirror: Path, repo: str, minor: int) -> Checkout:
    git_dir = mirror / repo.replace("/", "+") / "repo"
    if not git_dir.is_dir():
        sys.exit(f"{git_dir} is missing: fetch github:{repo} first")
    ref = choose_ref(git_dir, minor)
    commit = _git(git_dir, "rev-parse", f"{ref}^{{commit}}").strip()
    return Checkout(repo, git_dir, ref, commit)


# --------------------------------------------------------------------------------------------
# generated.proto


@dataclass
class ProtoField:
    number: int
    name: str
    type: str | list[str]  # resolved: scalar, fully qualified message, or [key, value]
    repeated: bool


@dataclass
class ProtoMessage:
    package: str
    name: str
    fields: list[ProtoField] = field(default_factory=list)
    list_wrapper: bool = False  # a Go named slice (``type ExtraValue []string``)


_PACKAGE = re.compile(r"^package\s+([\w.]+)\s*;")
_MESSAGE = re.compile(r"^message\s+(\w+)\s*\{")
_FIELD = re.compile(
    r"^(optional|repeated|required)?\s*(map<\s*([\w.]+)\s*,\s*([\w.]+)\s*>|[\w.]+)\s+"
    r"(\w+)\s*=\s*(\d+)\s*(?:\[[^\]]*\])?\s*;")


def parse_proto(text: str) -> list[ProtoMessage]:
    """The messages of a go-to-protobuf ``generated.proto``: flat, one field a line."""
    package = ""
    messages: list[ProtoMessage] = []
    current: ProtoMessage | None = None
    comment: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("//"):
            comment.append(line)
            continue
        if m := _PACKAGE.match(line):
            package = m.group(1)
        elif m := _MESSAGE.match(line):
            wrapper = any("+protobuf.nullable=true" in c for c in comment)
            current = ProtoMessage(package, m.group(1), list_wrapper=wrapper)
            messages.append(current)
        elif line == "}":
            current = None
        elif current is not None and (m := _FIELD.match(line)):
            label, type_, key, value, name, number = m.groups()[:6]
            resolved = ([_resolve(key, package), _resolve(value, package)] if key
                        else _resolve(type_, package))
            current.fields.append(ProtoField(int(number), name, resolved, label == "repeated"))
        elif line and current is not None and not line.startswith(("option", "reserved")):
            raise ValueError(f"{package}.{current.name}: cannot parse {line!r}")
        if line:
            comment = []
    return messages


def _resolve(type_: str, package: str) -> str:
    if type_ in SCALARS:
        return type_
    if type_.startswith("."):
        return type_[1:]
    return f"{package}.{type_}"


# --------------------------------------------------------------------------------------------
# Go structs


@dataclass(frozen=True)
class GoField:
    json_name: str
    keep_zero: bool
    inline: bool


_STRUCT = re.compile(r"^type\s+(\w+)\s+struct\s*\{\s*$")
_GO_FIELD = re.compile(r"^\t(?:(\w+)\s+)?([\w.*\[\]]+)\s+`([^`]*)`")
_TAG = re.compile(r'(\w+):"([^"]*)"')


_DEFINED = re.compile(r"^type\s+(\w+)\s+(?:(\w+)\.)?(\w+)\s*$")
_IMPORT = re.compile(r'^\s*(?:(\w+)\s+)?"([\w./-]+)"\s*$')


def parse_go_definitions(text: str, package: str) -> dict[str, str]:
    """``type List metav1.List``: Go types defined as another struct, by qualified name."""
    imports: dict[str, str] = {}
    in_imports = False
    definitions: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("import ("):
            in_imports = True
        elif in_imports and line.startswith(")"):
            in_imports = False
        elif in_imports and (m := _IMPORT.match(line)):
            alias = m.group(1) or m.group(2).rsplit("/", 1)[-1]
            imports[alias] = m.group(2).replace("/", ".").replace("-", "_")
        elif m := _DEFINED.match(line):
            name, qualifier, target = m.groups()
            if qualifier is None:
                definitions[name] = f"{package}.{target}"
            elif qualifier in imports:
                definitions[name] = f"{imports[qualifier]}.{target}"
    return definitions


def parse_go_structs(text: str) -> dict[str, dict[int, GoField]]:
    """For each struct with protobuf tags: proto field number → how Go writes it in JSON."""
    structs: dict[str, dict[int, GoField]] = {}
    current: dict[int, GoField] | None = None
    for line in text.splitlines():
        if m := _STRUCT.match(line):
            current = structs.setdefault(m.group(1), {})
        elif line.startswith("}"):
            current = None
        elif current is not None and (m := _GO_FIELD.match(line)):
            parsed = _go_field(*m.groups())
            if parsed is not None:
                current[parsed[0]] = parsed[1]
    return {name: fields for name, fields in structs.items() if fields}


def _go_field(name: str | None, type_: str, tag: str) -> tuple[int, GoField] | None:
    tags = dict(_TAG.findall(tag))
    proto = tags.get("protobuf", "-").split(",")
    if proto[0] == "-" or len(proto) < 2:
        return None
    json_name, *options = tags.get("json", "").split(",")
    embedded = name is None
    if not json_name and not embedded:
        json_name = name  # encoding/json's default for an untagged field
    omits_zero = "omitempty" in options or "omitzero" in options
    keep_zero = type_.startswith("*") or not omits_zero
    inline = embedded and json_name == ""
    return int(proto[1]), GoField(json_name, keep_zero, inline)


# --------------------------------------------------------------------------------------------
# register.go


_GROUP_NAME = re.compile(r'GroupName\s*=\s*"([^"]*)"')
_GROUP_MARKER = re.compile(r"\+groupName=([\w.-]*)")
_VERSION = re.compile(r'SchemeGroupVersion\s*=\s*schema\.GroupVersion\{[^}]*Version:\s*"(\w+)"')
_REGISTERED = re.compile(r"&(?:(\w+)\.)?(\w+)\{\}")


def _block(text: str, opening: str) -> str:
    """The text from ``opening`` to the first line that closes it at column 0 or 1."""
    start = text.index(opening)
    end = re.compile(r"^\t?[)}]", re.M).search(text, start + len(opening))
    return text[start:end.start() if end else len(text)]


def registered_kinds(register_go: str, doc_go: str, package: str
                     ) -> tuple[str, dict[str, str]] | None:
    """(apiVersion, kind → message) of an API group version's ``addKnownTypes``."""
    version = _VERSION.search(register_go)
    group = _GROUP_NAME.search(register_go) or _GROUP_MARKER.search(doc_go)
    if not version or not group or "addKnownTypes" not in register_go:
        return None
    kinds: dict[str, str] = {}
    for qualifier, kind in _REGISTERED.findall(_block(register_go, "func addKnownTypes")):
        kinds[kind] = f"{META_V1}.{kind}" if qualifier == "metav1" else f"{package}.{kind}"
    api_version = f"{group.group(1)}/{version.group(1)}" if group.group(1) else version.group(1)
    return api_version, kinds


def meta_kinds(register_go: str) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """meta/v1's registrations: ({apiVersion: kinds}, kinds every group version has).

    ``AddToGroupVersion`` gives every group version ``WatchEvent`` and the options kinds, and
    registers ``Status`` and the discovery kinds as unversioned (``apiVersion: v1``);
    ``AddMetaToScheme`` adds ``meta.k8s.io/v1``'s own kinds.
    """
    def names(block: str) -> list[str]:
        return [kind for _, kind in _REGISTERED.findall(block)]

    options = names(_block(register_go, "var optionsTypes"))
    unversioned = names(_block(register_go, "scheme.AddUnversionedTypes(Unversioned"))
    own = names(_block(register_go, "func AddMetaToScheme"))
    common = {kind: f"{META_V1}.{kind}" for kind in ["WatchEvent", *options]}
    by_version = {
        "v1": {kind: f"{META_V1}.{kind}" for kind in unversioned},
        "meta.k8s.io/v1": {kind: f"{META_V1}.{kind}" for kind in [*options, *own]},
    }
    return by_version, common


# --------------------------------------------------------------------------------------------
# assembly


@dataclass
class Schema:
    messages: dict[str, ProtoMessage] = field(default_factory=dict)
    go: dict[str, dict[int, GoField]] = field(default_factory=dict)  # by qualified name
    go_definitions: dict[str, str] = field(default_factory=dict)  # defined type → its struct
    kinds: dict[str, dict[str, str]] = field(default_factory=dict)
    common_kinds: dict[str, str] = field(default_factory=dict)
    sources: dict[str, dict[str, str]] = field(default_factory=dict)


def package_dirs(co: Checkout, wanted: list[str] | None) -> list[str]:
    protos = sorted(path[: -len("/generated.proto")] for path in co.files()
                    if path.endswith("/generated.proto"))
    return protos if wanted is None else [d for d in protos if d in wanted]


def read_package(co: Checkout, directory: str, files: list[str], schema: Schema) -> None:
    messages = parse_proto(co.show(f"{directory}/generated.proto"))
    package = messages[0].package
    for message in messages:
        schema.messages[f"{package}.{message.name}"] = message
    for path in files:
        if (path.rsplit("/", 1)[0] == directory and path.endswith(".go")
                and not path.endswith(("_test.go", ".pb.go"))
                and not path.rsplit("/", 1)[1].startswith("zz_generated")):
            text = co.show(path)
            for name, fields in parse_go_structs(text).items():
                schema.go[f"{package}.{name}"] = fields
            for name, target in parse_go_definitions(text, package).items():
                schema.go_definitions[f"{package}.{name}"] = target
    _read_registration(co, directory, files, package, schema)


def _read_registration(co: Checkout, directory: str, files: list[str], package: str,
                       schema: Schema) -> None:
    register = f"{directory}/register.go"
    if register not in files:
        return
    text = co.show(register)
    if package == META_V1:
        by_version, common = meta_kinds(text)
        for api_version, kinds in by_version.items():
            schema.kinds.setdefault(api_version, {}).update(kinds)
        schema.common_kinds.update(common)
        return
    doc = co.show(f"{directory}/doc.go") if f"{directory}/doc.go" in files else ""
    found = registered_kinds(text, doc, package)
    if found:
        schema.kinds.setdefault(found[0], {}).update(found[1])


def collect(mirror: Path, minor: int) -> Schema:
    schema = Schema()
    for repo, wanted in SOURCES.items():
        co = checkout(mirror, repo, minor)
        schema.sources[repo] = {"ref": co.ref, "commit": co.commit}
        files = co.files()
        for directory in package_dirs(co, wanted):
            read_package(co, directory, files, schema)
    for name, target in schema.go_definitions.items():
        if name in schema.messages and name not in schema.go and target in schema.go:
            schema.go[name] = schema.go[target]
    return schema


def _relative(type_: str, package: str) -> str:
    if type_ in SCALARS:
        return type_
    prefix, _, name = type_.rpartition(".")
    return name if prefix == package else type_


def render_message(message: ProtoMessage, go: dict[int, GoField]) -> list[list]:
    rows = []
    for f in sorted(message.fields, key=lambda f: f.number):
        info = go.get(f.number)
        json_name = info.json_name if info else f.name
        flags = REPEATED if f.repeated else 0
        if info and info.keep_zero:
            flags |= KEEP_ZERO
        if info and info.inline:
            flags |= INLINE
        type_ = ([_relative(t, message.package) for t in f.type] if isinstance(f.type, list)
                 else _relative(f.type, message.package))
        rows.append([f.number, json_name, type_, flags])
    return rows


def check(schema: Schema) -> list[str]:
    """Every referenced message exists and every registered kind has a message."""
    problems = []
    for qualified, message in schema.messages.items():
        for f in message.fields:
            for t in (f.type if isinstance(f.type, list) else [f.type]):
                if t not in SCALARS and t not in schema.messages:
                    problems.append(f"{qualified}.{f.name}: unknown type {t}")
                elif t in SCALARS and t not in CODEC_SCALARS:
                    problems.append(f"{qualified}.{f.name}: sampan/api/protobuf.py has no "
                                    f"codec for {t}")
    for api_version, kinds in schema.kinds.items():
        for kind, message_name in list(kinds.items()):
            if message_name not in schema.messages:
                # Kinds without a proto message (meta.k8s.io Table) are JSON-only upstream.
                print(f"note: {api_version} {kind} has no protobuf message; left out",
                      file=sys.stderr)
                del kinds[kind]
    return problems


def render(schema: Schema) -> dict:
    packages: dict[str, dict[str, list]] = {}
    for qualified in sorted(schema.messages):
        message = schema.messages[qualified]
        packages.setdefault(message.package, {})[message.name] = render_message(
            message, schema.go.get(qualified, {}))
    return {
        "header": {
            "generator": "scripts/gen_protobuf_schema.py",
            "sources": schema.sources,
            "fieldFormat": FIELD_FORMAT,
        },
        "kinds": {v: dict(sorted(k.items())) for v, k in sorted(schema.kinds.items())},
        "commonKinds": dict(sorted(schema.common_kinds.items())),
        "listWrappers": sorted(q for q, m in schema.messages.items() if m.list_wrapper),
        "packages": packages,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minor", type=int, default=37, help="Kubernetes 1.<minor>")
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    schema = collect(args.mirror, args.minor)
    problems = check(schema)
    if problems:
        sys.exit("\n".join(problems))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(render(schema), separators=(",", ":"), ensure_ascii=False)
    args.out.write_text(text + "\n")
    print(f"wrote {args.out} ({len(text)} bytes, {len(schema.messages)} messages, "
          f"{sum(map(len, schema.kinds.values()))} kinds)", file=sys.stderr)


if __name__ == "__main__":
    main()
