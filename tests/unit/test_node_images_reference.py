"""Reference parsing: the tables of distribution/reference's normalize tests."""

from __future__ import annotations

import pytest

from sampan.node.images.reference import (
    ReferenceError, is_image_id, normalize, parse, parse_normalized)

HEX = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"
DIGEST = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"

VALID = [
    "docker/docker", "library/debian", "debian", "localhost/library/debian", "localhost/debian",
    "LOCALDOMAIN/library/debian", "LOCALDOMAIN/debian", "docker.io/docker/docker",
    "docker.io/library/debian", "docker.io/debian", "index.docker.io/docker/docker",
    "index.docker.io/library/debian", "index.docker.io/debian", "127.0.0.1:5000/docker/docker",
    "127.0.0.1:5000/library/debian", "127.0.0.1:5000/debian", "192.168.0.1", "192.168.0.1:80",
    "192.168.0.1:8/debian", "192.168.0.2:25000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "[fc00::1]:5000/docker", "[fc00::1]:5000/docker/docker",
    "[fc00:1:2:3:4:5:6:7]:5000/library/debian", f"docker.io/{HEX}", "Docker/docker",
    "DOCKER/docker", "docker-rules/docker", "docker---rules/docker", "d/docker", "jess/t",
    "dock__er/docker",
]
INVALID = [
    "https://github.com/docker/docker", "docker/Docker", "-docker", "-docker/docker",
    "-docker.io/docker/docker", "docker///docker", "docker.io/docker/Docker",
    "docker.io/docker///docker", "[fc00::1]", "[fc00::1]:5000", "fc00::1:5000/debian",
    "[fe80::1%eth0]:5000/debian", "[2001:db8:3:4::192.0.2.33]:5000/debian", HEX,
    "docker-/docker", "-docker-/docker", "____/____", "_docker/_docker", "dock..er/docker",
    "dock_.er/docker", "dock-.er/docker", "docker/", "",
    "a/" + "b" * 256,
    "busybox:-bad", "busybox@sha256:abc", "busybox@sha256:" + "A" * 64,
]


@pytest.mark.parametrize("name", VALID)
def test_valid_names(name):
    parse_normalized(name)


@pytest.mark.parametrize("name", INVALID)
def test_invalid_names(name):
    with pytest.raises(ReferenceError):
        parse(name)


# (familiar, full, ambiguous, domain, remote) from TestParseRepositoryInfo
REPOSITORY_INFO = [
    ("localhost/fooo", "localhost/fooo", "", "localhost", "fooo"),
    ("localhost/fooo/bar", "localhost/fooo/bar", "", "localhost", "fooo/bar"),
    ("LOCALDOMAIN/fooo", "LOCALDOMAIN/fooo", "", "LOCALDOMAIN", "fooo"),
    ("fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar", "docker.io", "fooo/bar"),
    ("ubuntu", "docker.io/library/ubuntu", "library/ubuntu", "docker.io", "library/ubuntu"),
    ("nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", "", "docker.io", "nonlibrary/ubuntu"),
    ("other/library", "docker.io/other/library", "", "docker.io", "other/library"),
    ("127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", "",
     "127.0.0.1:8000", "private/moonbase"),
    ("example.com:8000/privatebasee", "example.com:8000/privatebasee", "", "example.com:8000",
     "privatebasee"),
    ("ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base",
     "index.docker.io/library/ubuntu-12.04-base", "docker.io", "library/ubuntu-12.04-base"),
    ("foo", "docker.io/library/foo", "docker.io/foo", "docker.io", "library/foo"),
    ("library/foo/bar", "docker.io/library/foo/bar", "", "docker.io", "library/foo/bar"),
    ("store/foo/bar", "docker.io/store/foo/bar", "", "docker.io", "store/foo/bar"),
    ("Foo/bar", "Foo/bar", "", "Foo", "bar"),
]


@pytest.mark.parametrize("familiar,full,ambiguous,domain,remote", REPOSITORY_INFO)
def test_repository_info(familiar, full, ambiguous, domain, remote):
    for s in filter(None, (familiar, full, ambiguous)):
        r = parse_normalized(s)
        assert r.familiar_name() == familiar
        assert r.repository == full
        assert r.domain == domain
        assert r.path == remote


def test_normalize_adds_latest_and_keeps_digest():
    assert normalize("busybox") == "docker.io/library/busybox:latest"
    assert normalize("busybox:1.36") == "docker.io/library/busybox:1.36"
    assert normalize("127.0.0.1:5000/team/app:v1") == "127.0.0.1:5000/team/app:v1"
    assert normalize(f"busybox@{DIGEST}") == f"docker.io/library/busybox@{DIGEST}"
    r = parse(f"busybox:latest@{DIGEST}")
    assert (r.tag, r.digest) == ("latest", DIGEST)
    assert r.familiar() == f"busybox:latest@{DIGEST}"
    assert r.digested == f"docker.io/library/busybox@{DIGEST}"


def test_error_messages():
    with pytest.raises(ReferenceError,
                       match=r"repository name \(library/Busybox\) must be lowercase"):
        parse("Busybox")
    with pytest.raises(ReferenceError, match="cannot specify 64-byte hexadecimal strings"):
        parse(HEX)
    with pytest.raises(ReferenceError, match="^invalid reference format$"):
        parse("busybox:tag:more")


def test_image_ids():
    assert is_image_id(HEX) == "sha256:" + HEX
    assert is_image_id("sha256:" + HEX) == "sha256:" + HEX
    assert is_image_id("busybox") is None
