"""The queue offers each plan of :mod:`mc_beamline.plans` with that plan's parameters: the same
names, kinds and order, and the same defaults, as the queue server describes them (freshly
and in the shipped plan list), and only the plans the permissions allow."""

from __future__ import annotations

import inspect

import pytest
import yaml
from bluesky_queueserver.manager.profile_ops import _process_plan

from mc_beamline import plans
from mc_beamline.plans import PlanArgumentError
from mc_beamline.queue_server import PROFILE_COLLECTION
from mc_beamline.queue_server.plans import QUEUE_PLANS, queue_plan


def plan_parameters(plan) -> list[tuple[str, str, str | None]]:
    """(name, kind, default as the queue server writes it) of each parameter of ``plan``."""
    return [(p.name, p.kind.name, None if p.default is p.empty else repr(p.default))
            for p in inspect.signature(plan).parameters.values()]


def described_parameters(description: dict) -> list[tuple[str, str, str | None]]:
    return [(p["name"], p["kind"]["name"], p.get("default")) for p in description["parameters"]]


@pytest.mark.parametrize("name", sorted(QUEUE_PLANS))
def test_queue_plan_has_the_parameters_and_defaults_of_the_plan(name):
    plan = getattr(plans, name)
    queued = QUEUE_PLANS[name]
    described = _process_plan(queued, existing_devices={}, existing_plans={})
    assert described["name"] == name
    assert described_parameters(described) == plan_parameters(plan)
    assert [(p.name, p.kind, p.default) for p in inspect.signature(queued).parameters.values()] == [
        (p.name, p.kind, p.default) for p in inspect.signature(plan).parameters.values()]


@pytest.mark.parametrize("name", sorted(QUEUE_PLANS))
def test_shipped_plan_list_has_the_parameters_and_defaults_of_the_plan(name):
    shipped = yaml.safe_load((PROFILE_COLLECTION / "existing_plans_and_devices.yaml").read_text())
    assert set(shipped["existing_plans"]) == set(QUEUE_PLANS)
    assert described_parameters(shipped["existing_plans"][name]) == plan_parameters(getattr(plans, name))


def test_permissions_allow_exactly_the_queue_plans():
    permissions = yaml.safe_load((PROFILE_COLLECTION / "user_group_permissions.yaml").read_text())
    for group in permissions["user_groups"].values():
        assert set(group["allowed_plans"]) == set(QUEUE_PLANS)


def test_queue_annotation_of_a_parameter_the_plan_lacks_is_refused():
    with pytest.raises(ValueError, match=r"\['nz'\] are not in the signature"):
        queue_plan(plans.nanodiffraction_raster, {"parameters": {"nz": {"description": "layers"}}})


def test_queue_plan_runs_the_plan_with_the_arguments_it_is_given():
    raster = QUEUE_PLANS["nanodiffraction_raster"](None, None, ny=0)
    with pytest.raises(PlanArgumentError, match="ny"):
        next(raster)  # refused by the plan's own check, before it touches a device
