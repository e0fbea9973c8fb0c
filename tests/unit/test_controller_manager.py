"""Choosing controllers with ``--controllers`` as kube-controller-manager reads the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from sampan.controllers.manager import (
    KNOWN_CONTROLLERS,
    ControllerOptions,
    selected_controllers,
)


def test_star_selects_every_controller_whose_options_are_given() -> None:
    names = selected_controllers(ControllerOptions())
    assert "replicaset-controller" in names and "deployment-controller" in names
    assert "serviceaccount-token-controller" not in names  # needs the signing key
    keyed = selected_controllers(ControllerOptions(service_account_key=Path("k"),
                                                   root_ca=Path("ca")))
    assert set(keyed) == set(KNOWN_CONTROLLERS)


def test_names_add_and_minus_names_remove() -> None:
    names = selected_controllers(ControllerOptions(controllers=["*", "-job-controller"]))
    assert "job-controller" not in names and "cronjob-controller" in names
    assert selected_controllers(ControllerOptions(controllers=["namespace-controller"])) == \
        ["namespace-controller"]


def test_an_unknown_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown controller 'nope'"):
        selected_controllers(ControllerOptions(controllers=["*", "nope"]))
