from __future__ import annotations

import pytest

from tests.cluster import Server, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    srv = start_server(tmp_path_factory.mktemp("apiserver"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def kubeconfig(server: Server) -> str:
    return server.kubeconfig


@pytest.fixture(scope="session")
def api_client(kubeconfig: str):
    """The official kubernetes Python client, configured from the server's kubeconfig."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        yield api
