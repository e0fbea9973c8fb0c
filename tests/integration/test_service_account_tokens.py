"""Service account tokens: TokenRequest, authentication with bound and legacy tokens, the
tokens controller and the root CA publisher, against a real API server."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import AsyncIterator

import pytest

from sampan.client import ApiError, Client, load_kubeconfig
from sampan.controllers.manager import ControllerManager
from sampan.controllers.tokens import credential_controllers
from tests.cluster import Server
from tests.integration.helpers import eventually, new_namespace


@pytest.fixture
async def client(kubeconfig: str) -> AsyncIterator[Client]:
    async with Client(load_kubeconfig(kubeconfig)) as c:
        yield c


def as_token(kubeconfig: str, token: str) -> Client:
    config = dataclasses.replace(load_kubeconfig(kubeconfig), token=token)
    return Client(config)


async def whoami(kubeconfig: str, token: str) -> dict:
    async with as_token(kubeconfig, token) as c:
        review = await c.create("authentication.k8s.io/v1", "selfsubjectreviews",
                                {"apiVersion": "authentication.k8s.io/v1",
                                 "kind": "SelfSubjectReview"})
        return review["status"]["userInfo"]


async def request_token(client: Client, namespace: str, name: str, **spec) -> str:
    answer = await client.create("v1", "serviceaccounts", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        namespace=namespace, name=name, subresource="token")
    assert answer["kind"] == "TokenRequest"
    assert answer["status"]["expirationTimestamp"]
    return answer["status"]["token"]


async def new_account(client: Client, namespace: str, name: str) -> dict:
    return await client.create("v1", "serviceaccounts", {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        namespace=namespace)


async def test_a_requested_token_authenticates_as_the_service_account(
        client: Client, kubeconfig: str) -> None:
    ns = await new_namespace(client, "sa")
    account = await new_account(client, ns, "robot")
    token = await request_token(client, ns, "robot", expirationSeconds=3600)
    user = await whoami(kubeconfig, token)
    assert user["username"] == f"system:serviceaccount:{ns}:robot"
    assert user["uid"] == account["metadata"]["uid"]
    assert set(user["groups"]) == {"system:serviceaccounts", f"system:serviceaccounts:{ns}",
                                   "system:authenticated"}

    # RBAC applies to the account like to any user.
    with pytest.raises(ApiError) as denied:
        async with as_token(kubeconfig, token) as robot:
            await robot.list("v1", "secrets", namespace=ns)
    assert denied.value.code == 403
    assert f'User "system:serviceaccount:{ns}:robot" cannot list resource "secrets"' in \
        denied.value.message


async def test_a_pod_bound_token_dies_with_its_pod(client: Client, kubeconfig: str) -> None:
    ns = await new_namespace(client, "sa")
    await new_account(client, ns, "robot")
    pod = await client.create("v1", "pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"serviceAccountName": "robot", "containers": [{"name": "c", "image": "busybox"}]}},
        namespace=ns)
    token = await request_token(client, ns, "robot", boundObjectRef={
        "kind": "Pod", "apiVersion": "v1", "name": "p", "uid": pod["metadata"]["uid"]})
    user = await whoami(kubeconfig, token)
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["p"]
    await client.delete("v1", "pods", "p", namespace=ns, grace_period_seconds=0)

    async def rejected() -> bool:
        await asyncio.sleep(1)  # the authenticator caches a success for up to 10 s
        try:
            await whoami(kubeconfig, token)
            return False
        except ApiError as e:
            return e.code == 401
    await eventually(rejected, timeout=30, what="token of a deleted pod rejected")


async def test_token_requests_are_validated(client: Client) -> None:
    ns = await new_namespace(client, "sa")
    await new_account(client, ns, "robot")
    with pytest.raises(ApiError) as short:
        await request_token(client, ns, "robot", expirationSeconds=60)
    assert short.value.code == 422
    assert "may not specify a duration less than 10 minutes" in short.value.message
    with pytest.raises(ApiError) as missing:
        await request_token(client, ns, "nobody")
    assert missing.value.code == 404


async def test_legacy_token_secrets_are_filled_and_authenticate(
        client: Client, kubeconfig: str, server: Server) -> None:
    ns = await new_namespace(client, "sa")
    account = await new_account(client, ns, "robot")
    factories = credential_controllers(server.data_dir / "pki" / "service-account.key",
                                       server.data_dir / "pki" / "ca.crt")
    manager = ControllerManager(client, factories, leader_election=False)
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    try:
        await client.create("v1", "secrets", {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": "robot-token",
                         "annotations": {"kubernetes.io/service-account.name": "robot"}}},
            namespace=ns)

        async def filled() -> bool:
            secret = await client.get("v1", "secrets", "robot-token", namespace=ns)
            return bool((secret.get("data") or {}).get("token"))
        await eventually(filled, what="token secret filled")
        secret = await client.get("v1", "secrets", "robot-token", namespace=ns)
        assert base64.b64decode(secret["data"]["namespace"]).decode() == ns
        assert base64.b64decode(secret["data"]["ca.crt"]) == \
            (server.data_dir / "pki" / "ca.crt").read_bytes()
        assert secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"] == \
            account["metadata"]["uid"]
        token = base64.b64decode(secret["data"]["token"]).decode()
        assert (await whoami(kubeconfig, token))["username"] == \
            f"system:serviceaccount:{ns}:robot"

        async def root_ca_published() -> bool:
            try:
                cm = await client.get("v1", "configmaps", "kube-root-ca.crt", namespace=ns)
            except ApiError:
                return False
            return cm["data"]["ca.crt"] == (server.data_dir / "pki" / "ca.crt").read_text()
        await eventually(root_ca_published, what="kube-root-ca.crt")

        # Deleting the account deletes its token secret, and the token stops working.
        await client.delete("v1", "serviceaccounts", "robot", namespace=ns)

        async def secret_gone() -> bool:
            try:
                await client.get("v1", "secrets", "robot-token", namespace=ns)
                return False
            except ApiError as e:
                return e.not_found
        await eventually(secret_gone, what="token secret deleted with its account")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
