"""Ground-truth worlds: tasks whose true reward is known, and simulated annotators."""

from prefloop.worlds.annotators import BradleyTerryAnnotator
from prefloop.worlds.base import World
from prefloop.worlds.reviews import ReviewWorld

WORLDS = {"reviews": ReviewWorld}


def get_world(name: str) -> World:
    """A world by name, with its default settings."""
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; available: {sorted(WORLDS)}")
    return WORLDS[name]()


__all__ = ["WORLDS", "BradleyTerryAnnotator", "ReviewWorld", "World", "get_world"]
