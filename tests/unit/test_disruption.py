"""PodDisruptionBudget arithmetic: expected and desired counts, health, disrupted pods."""

from __future__ import annotations

from typing import Any

import pytest

from sampan.controllers.disruption import (
    DELETION_TIMEOUT,
    BudgetStatus,
    ExpectedCountError,
    count_healthy,
    disrupted_pod_map,
    expected_pod_count,
    new_status,
    scaled_value,
)
from sampan.controllers.util import parse_time

T0 = "2024-01-01T00:00:00Z"
NOW = parse_time(T0) or 0.0


def pod(name: str, *, ready: bool = True, deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if deleting:
        metadata["deletionTimestamp"] = T0
    return {"metadata": metadata,
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pdb(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "b", "generation": 2}, "spec": spec}


def test_scaled_value() -> None:
    assert scaled_value(3, 10, True) == 3
    assert scaled_value("50%", 5, True) == 3
    assert scaled_value("50%", 5, False) == 2
    assert scaled_value("34%", 3, True) == 2
    with pytest.raises(ExpectedCountError):
        scaled_value("half", 4, True)


def test_expected_counts() -> None:
    pods = [pod("a"), pod("b"), pod("c")]
    assert expected_pod_count(pdb(minAvailable=2), pods, None) == (3, 2)
    assert expected_pod_count(pdb(minAvailable="50%"), pods, {"rs": 4}) == (4, 2)
    assert expected_pod_count(pdb(maxUnavailable=1), pods, {"rs": 4, "ss": 2}) == (6, 5)
    assert expected_pod_count(pdb(maxUnavailable="100%"), pods, {"rs": 3}) == (3, 0)
    with pytest.raises(ExpectedCountError):
        expected_pod_count(pdb(maxUnavailable=1), pods, None)


def test_health_and_disrupted_pods() -> None:
    pods = [pod("a"), pod("b"), pod("c", ready=False), pod("d", deleting=True), pod("e")]
    budget = pdb(minAvailable=1)
    budget["status"] = {"disruptedPods": {"b": T0, "e": "2023-12-31T23:00:00Z", "d": T0}}
    disrupted, overdue, recheck = disrupted_pod_map(budget, pods, NOW + 10)
    assert disrupted == {"b": T0}  # e overstayed, d is already being deleted
    assert [p["metadata"]["name"] for p in overdue] == ["e"]
    assert recheck == NOW + DELETION_TIMEOUT
    assert count_healthy(pods, disrupted, NOW + 10) == 2  # a and e


def test_status_and_condition() -> None:
    budget = pdb(minAvailable=1)
    status = new_status(budget, BudgetStatus(3, 1, 3, {}))
    assert status is not None
    assert (status["disruptionsAllowed"], status["currentHealthy"], status["desiredHealthy"],
            status["expectedPods"], status["observedGeneration"]) == (2, 3, 1, 3, 2)
    condition = status["conditions"][0]
    assert (condition["type"], condition["status"], condition["reason"]) == \
        ("DisruptionAllowed", "True", "SufficientPods")
    budget["status"] = status
    assert new_status(budget, BudgetStatus(3, 1, 3, {})) is None  # nothing to write

    short = new_status(budget, BudgetStatus(1, 1, 3, {}))
    assert short["disruptionsAllowed"] == 0
    assert (short["conditions"][0]["status"], short["conditions"][0]["reason"]) == \
        ("False", "InsufficientPods")
    # No pods expected yet: no disruptions, whatever the arithmetic says.
    assert BudgetStatus(2, 0, 0, {}).disruptions_allowed == 0
