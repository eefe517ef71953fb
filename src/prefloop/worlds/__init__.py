"""Ground-truth worlds: tasks whose true reward is known, and simulated annotators."""

from prefloop.worlds.annotators import BradleyTerryAnnotator
from prefloop.worlds.arithmetic import ArithmeticWorld
from prefloop.worlds.base import World
from prefloop.worlds.review_shifts import RMEvalSuite, build_review_suite
from prefloop.worlds.reviews import ReviewWorld

WORLDS = {"reviews": ReviewWorld, "arithmetic": ArithmeticWorld}
#: Reward-model evaluation suites by world: ``build(world, prompts=N, seed=S)``.
RM_SUITES = {"reviews": build_review_suite}


def get_world(name: str) -> World:
    """A world by name, with its default settings."""
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; available: {sorted(WORLDS)}")
    return WORLDS[name]()


def get_rm_suite(name: str, prompts: int, seed: int) -> RMEvalSuite:
    """World ``name``'s reward-model evaluation suite on ``prompts`` held-out prompts."""
    if name not in RM_SUITES:
        raise ValueError(
            f"no reward-model suite for world {name!r}; available: {sorted(RM_SUITES)}"
        )
    return RM_SUITES[name](get_world(name), prompts=prompts, seed=seed)


__all__ = [
    "RM_SUITES",
    "WORLDS",
    "ArithmeticWorld",
    "get_rm_suite",
    "BradleyTerryAnnotator",
    "ReviewWorld",
    "World",
    "get_world",
]
