"""The view against its model (tests/viewmodel/): any sequence of requests, without
and with faults in the driver below. LAYERFS_MODEL_EXAMPLES sets the budget
(scripts/soak-model runs a long one)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from ..viewmodel import FaultyViewMachine, TwoMountsMachine, ViewMachine

EXAMPLES = int(os.environ.get("LAYERFS_MODEL_EXAMPLES", "40"))
BUDGET = settings(
    max_examples=EXAMPLES,
    stateful_step_count=int(os.environ.get("LAYERFS_MODEL_STEPS", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("LAYERFS_MODEL_RANDOM") is None,
    database=None,
)


def test_the_view_follows_its_model() -> None:
    run_state_machine_as_test(ViewMachine, settings=BUDGET)


def test_faults_below_the_view_end_in_an_errno_and_leave_a_sound_store() -> None:
    run_state_machine_as_test(FaultyViewMachine, settings=BUDGET)


def test_two_mounts_of_one_store_agree() -> None:
    run_state_machine_as_test(TwoMountsMachine, settings=BUDGET)
