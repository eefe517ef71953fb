"""User types with conflicting tastes on the review world, for personalized reward models.

Every user shares the world's gold aspects but adds a signed taste for length: a ``concise``
user subtracts ``(words − target) / target`` (shorter is better, even below the target), a
``verbose`` user adds it (longer is better, even past the target). On pairs that differ mostly
in length the two disagree, so no single reward model can satisfy both; a model that infers the
user from a few of their labels can.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from prefloop.data.records import Comparison
from prefloop.worlds.annotators import BradleyTerryAnnotator
from prefloop.worlds.reviews import ReviewWorld


@dataclass(frozen=True)
class UserType:
    """A user: the world's gold reward plus ``length_taste`` times the signed length excess."""

    name: str
    length_taste: float

    def reward(self, world: ReviewWorld, prompt: str, response: str) -> float:
        excess = (len(response.split()) - world.target_length) / world.target_length
        return world.gold_reward(prompt, response) + self.length_taste * max(-1.0, min(1.0, excess))


USER_TYPES = (UserType("concise", -2.0), UserType("verbose", 2.0))
#: A user whose taste is exactly the world's gold reward.
NEUTRAL = UserType("neutral", 0.0)


@dataclass
class UserWorld:
    """The review world seen through one user's taste (a ``World`` whose gold is theirs)."""

    world: ReviewWorld
    user: UserType

    @property
    def name(self) -> str:
        return f"{self.world.name}/{self.user.name}"

    def gold_reward(self, prompt: str, response: str) -> float:
        return self.user.reward(self.world, prompt, response)


def label_for_users(
    world: ReviewWorld,
    triples: Sequence[tuple[str, str, str]],
    users: Sequence[UserType] = USER_TYPES,
    user_ids: int = 20,
    temperature: float = 0.25,
    seed: int = 0,
) -> list[Comparison]:
    """Label each triple by one of ``user_ids`` simulated users, assigned round-robin to types.

    Each record's ``annotator`` is the user id (``concise-3``) and ``metadata["user_type"]`` the
    type, so a personalized model can gather a user's other labels as context.
    """
    rng = random.Random(seed)
    ids = [(users[i % len(users)], f"{users[i % len(users)].name}-{i}") for i in range(user_ids)]
    annotators = {
        uid: BradleyTerryAnnotator(
            UserWorld(world, user), temperature, seed=seed + i, annotator_id=uid
        )  # fmt: skip
        for i, (user, uid) in enumerate(ids)
    }
    out = []
    for prompt, a, b in triples:
        if a == b:
            continue
        user, uid = rng.choice(ids)
        record = annotators[uid].label(prompt, a, b)
        out.append(Comparison(record.prompt, record.chosen, record.rejected,
                              annotator=uid, metadata={"user_type": user.name}))  # fmt: skip
    return out
