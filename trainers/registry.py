"""Trainers by name. Built-ins register here; third-party trainers join through the entry-point
group `harness.trainers`, each entry point naming a builder with the signature of `TrainerBuilder`.

    # in a plug-in's pyproject.toml
    [project.entry-points."harness.trainers"]
    my_trainer = "my_package.module:build"
"""

from __future__ import annotations

import inspect
from importlib import metadata

from harness.config import ConfigError, TrainConfig
from trainers.base import BUILDER_PARAMETERS, TrainerBuilder

ENTRY_POINT_GROUP = "harness.trainers"

_BUILTIN: dict[str, str] = {
    "step_scaling": "trainers.step_scaling:build",
    "rollout_scaling": "trainers.rollout_scaling:build",
}


def available() -> dict[str, str]:
    """Every trainer name with where its builder lives (built-ins first, then plug-ins)."""
    names = dict(_BUILTIN)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        names.setdefault(ep.name, ep.value)
    return names


def get_builder(name: str) -> TrainerBuilder:
    """The builder registered as `name`; ValueError listing the valid names otherwise."""
    known = available()
    if name not in known:
        raise ValueError(f"unknown trainer '{name}'; valid: {', '.join(sorted(known))}")
    if name in _BUILTIN:
        module, attr = _BUILTIN[name].split(":")
        return check_builder(name, getattr(__import__(module, fromlist=[attr]), attr))
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return check_builder(name, ep.load())
    raise AssertionError("unreachable")


def check_builder(name: str, builder) -> TrainerBuilder:
    """`builder` if it takes exactly the `TrainerBuilder` keywords; ValueError naming both signatures otherwise."""
    try:
        params = tuple(inspect.signature(builder).parameters)
    except (TypeError, ValueError):
        params = None
    if params != BUILDER_PARAMETERS:
        raise ValueError(f"trainer '{name}': its builder takes ({', '.join(params or ['?'])}); a trainer builder takes "
                         f"({', '.join(BUILDER_PARAMETERS)}) (trainers.base.TrainerBuilder)")
    return builder


def arm_settings(train: TrainConfig, where: str):
    """The arm's n, prompts per step and learning rate as its built-in trainer derives them from
    `train` (each arm module's `settings`), for the jobs that do not build a trainer (plan, the
    verl back end, `bench step --shape`); `where` names that job in the error for any other trainer."""
    if train.trainer not in _BUILTIN:
        raise ConfigError(f"invalid value for 'train.trainer': {train.trainer!r}; {where} knows the built-in arms' "
                          f"settings only: {', '.join(_BUILTIN)}")
    module = _BUILTIN[train.trainer].split(":")[0]
    return __import__(module, fromlist=["settings"]).settings(train)
