"""``prefloop eval``: evaluate a model directory on a user's comparisons."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from prefloop.data.records import Comparison
from prefloop.eval.policy import evaluate_policy
from prefloop.eval.reward_model import evaluate_reward_model
from prefloop.models.policy import Policy
from prefloop.models.reward import RewardModel
from prefloop.worlds import get_world


def is_reward_model(model_dir: str | Path) -> bool:
    """True when the directory holds a sequence-classification (reward) model."""
    config = json.loads(Path(model_dir, "config.json").read_text())
    return any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])


def implicit_reward_accuracy(
    policy: Policy, reference: Policy, comparisons: Sequence[Comparison], beta: float
) -> float:
    """Share of pairs where β·log π/π_ref ranks chosen above rejected (DPO's implicit RM)."""
    prompts = [c.prompt for c in comparisons]
    rewards = {}
    for side in ("chosen", "rejected"):
        responses = [getattr(c, side) for c in comparisons]
        policy_logps, _ = policy.sequence_logps(prompts, responses)
        reference_logps, _ = reference.sequence_logps(prompts, responses)
        rewards[side] = beta * (policy_logps - reference_logps)
    return float((rewards["chosen"] > rewards["rejected"]).float().mean())


def evaluate_model(
    model_dir: Path,
    comparisons: Sequence[Comparison],
    reference_dir: Path | None,
    beta: float,
    world_name: str | None,
    samples: int,
    seed: int,
) -> dict:
    world = get_world(world_name) if world_name else None
    if is_reward_model(model_dir):
        reward_model = RewardModel.from_pretrained(model_dir)
        if world is not None:
            return {"kind": "reward_model"} | evaluate_reward_model(
                reward_model, world, comparisons
            )
        prompts = [c.prompt for c in comparisons]
        chosen = reward_model.score(prompts, [c.chosen for c in comparisons]).numpy()
        rejected = reward_model.score(prompts, [c.rejected for c in comparisons]).numpy()
        return {"kind": "reward_model", "label_accuracy": float(np.mean(chosen > rejected)),
                "pairs": len(comparisons)}  # fmt: skip
    policy = Policy.from_pretrained(model_dir)
    report: dict = {"kind": "policy", "pairs": len(comparisons)}
    if reference_dir is None:
        return report | {"note": "pass --reference for implicit-reward accuracy and KL"}
    reference = Policy.from_pretrained(reference_dir)
    report["implicit_reward_accuracy"] = implicit_reward_accuracy(
        policy, reference, comparisons, beta
    )
    if world is not None:
        prompts = list(dict.fromkeys(c.prompt for c in comparisons if isinstance(c.prompt, str)))
        evaluation = evaluate_policy(
            policy, world, prompts, reference, num_samples=samples, seed=seed
        )
        report |= {"world": world_name} | evaluation.to_dict()
    return report
