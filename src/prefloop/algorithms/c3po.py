"""C3PO / RLVF (Stephan et al. 2024): apply one verbal feedback without over-generalising it.

The feedback (e.g. "when reviewing a camera, always mention the battery") defines in-scope
prompts, near-scope prompts (close, but the feedback must not apply) and out-of-scope prompts
(everything else); which is which is the feedback's ``scope`` function, given by the world
(e.g. :data:`prefloop.lab.objectives.CAMERA_BATTERY`). The baseline policy answers all of them; a
deterministic editor (standing in for the model that writes revisions) rewrites in-scope
answers to follow the feedback. Training is DPO on (revised ≻ baseline) in scope, plus the
paper's SFT constraint: the likelihood of the baseline's own answers on near- and out-of-scope
prompts, weighted ``sigma_hard`` and ``sigma_soft`` (paper config: 0.1 and 0.2, beta 0.1).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from prefloop.data.records import Comparison, Prompt, Unpaired
from prefloop.models.policy import Policy
from prefloop.objectives import response_nll
from prefloop.train.caches import data_fingerprint
from prefloop.train.config import setting, validate
from prefloop.train.engine import TrainConfig, TrainResult, fit
from prefloop.train.preference import method_config, preference_task
from prefloop.worlds.base import World

Example = tuple[Prompt, str]  # (prompt, response)
SCOPES = ("in", "near", "out")


@dataclass(frozen=True)
class VerbalFeedback:
    """One sentence of feedback, where it applies, and how the editor follows it.

    ``scope(prompt)`` is ``in``, ``near`` or ``out``; ``sentence`` is what the editor adds to an
    answer that lacks ``keyword``.
    """

    text: str
    scope: Callable[[Prompt], str]
    keyword: str
    sentence: str


@dataclass
class C3POConfig:
    """C3PO: DPO in scope plus the baseline's likelihood outside it (paper config)."""

    name: ClassVar[str] = "c3po"
    kind: ClassVar[str] = "policy"
    beta: float = setting(0.1, "DPO's β on the in-scope pairs.", low=0, low_open=True)
    sigma_soft: float = setting(0.2, "Weight of the out-of-scope likelihood constraint.", low=0)
    sigma_hard: float = setting(0.1, "Weight of the near-scope likelihood constraint.", low=0)
    keep_data: str | None = setting(
        None,
        "Command line: unpaired records of the baseline's answers (metadata.scope "
        "near or out) to keep likely.",
    )

    def __post_init__(self) -> None:
        validate(self, f"method {self.name!r}")


def revise(response: str, feedback: VerbalFeedback) -> str:
    """The editor: add the feedback's sentence after the first one unless it is followed."""
    if feedback.keyword in response.split():
        return response
    sentences = [s.strip() + " ." for s in response.split(" .") if s.strip()]
    return " ".join(sentences[:1] + [feedback.sentence] + sentences[1:])


@dataclass
class C3POData:
    """In-scope preference pairs and the baseline's answers on near- and out-of-scope prompts."""

    in_scope: list[Comparison]
    near_scope: list[Example]
    out_of_scope: list[Example]


def build_c3po_data(
    baseline: Policy,
    world: World,
    feedback: VerbalFeedback,
    samples_per_prompt: int = 8,
    seed: int = 0,
) -> C3POData:
    """Sample the baseline on every prompt of the world and sort the answers by scope.

    Empty answers are dropped (feedback records need text).
    """
    prompts = world.prompt_pool("all")
    answers = baseline.generate(prompts, num_samples=samples_per_prompt, seed=seed)
    data = C3POData([], [], [])
    for prompt, group in zip(prompts, answers):
        scope = feedback.scope(prompt)
        for answer in filter(None, group):
            if scope == "in":
                revised = revise(answer, feedback)
                if revised != answer:
                    data.in_scope.append(Comparison(prompt, revised, answer, annotator="editor"))
            else:
                (data.near_scope if scope == "near" else data.out_of_scope).append((prompt, answer))
    random.Random(seed).shuffle(data.in_scope)
    return data


def keep_records(data: C3POData) -> list[Unpaired]:
    """The near- and out-of-scope baseline answers as unpaired records (``metadata.scope``)."""
    return [
        Unpaired(prompt, answer, True, annotator="baseline", metadata={"scope": scope})
        for scope, examples in (("near", data.near_scope), ("out", data.out_of_scope))
        for prompt, answer in examples
    ]


def _mean_nll(policy: Policy, examples: Sequence[Example]) -> torch.Tensor:
    batch = policy.encode([p for p, _ in examples], [r for _, r in examples])
    return response_nll(policy.token_logps(batch), batch.response_mask[:, 1:].to(policy.device))


def train_c3po(
    policy: Policy,
    data: C3POData,
    config: TrainConfig,
    out_dir: str | Path,
    method: C3POConfig | None = None,
    **run: Any,
) -> TrainResult:
    """DPO on the in-scope pairs + ``sigma * NLL`` of baseline answers outside the scope.

    Each step draws as many near- and out-of-scope examples as in-scope pairs, from the torch
    generator (so resuming reproduces them). ``sigma_* = 0`` is plain DPO on the same pairs.
    ``run`` goes to :func:`prefloop.train.engine.fit`.
    """
    method = method or C3POConfig()

    def constraint(indices: Sequence[int]) -> tuple[torch.Tensor, dict[str, float]]:
        total, metrics = torch.zeros((), device=policy.device), {}
        for name, examples, sigma in (("near", data.near_scope, method.sigma_hard),
                                      ("out", data.out_of_scope, method.sigma_soft)):  # fmt: skip
            if sigma and examples:
                picked = torch.randint(len(examples), (len(indices),)).tolist()
                nll = _mean_nll(policy, [examples[i] for i in picked])
                total = total + sigma * nll
                metrics[f"{name}_scope_nll"] = nll.item()
        return total, metrics

    task = preference_task(policy, data.in_scope, config, method_config("dpo", beta=method.beta),
                           extra_loss=constraint)  # fmt: skip
    task.settings |= {"c3po": vars(method), "keep": data_fingerprint(
        data.near_scope + data.out_of_scope)}  # fmt: skip
    return fit(task, config, out_dir, **run)


@torch.no_grad()
def feedback_metrics(
    policy: Policy,
    baseline: Policy,
    data: C3POData,
    world: World,
    feedback: VerbalFeedback,
    samples_per_prompt: int = 4,
    seed: int = 0,
) -> dict[str, float]:
    """How the feedback was applied: keyword rate per scope, drift and gold outside the scope.

    ``*_keyword_rate``: share of sampled answers that mention the feedback's keyword (in scope
    it is the adherence; outside it, over-generalisation). ``*_logp_shift``: mean absolute
    change of the baseline answers' log-probs (drift from the baseline). ``out_gold``: gold
    reward of sampled out-of-scope answers.
    """
    prompts = world.prompt_pool("all")
    answers = policy.generate(prompts, num_samples=samples_per_prompt, seed=seed)
    metrics: dict[str, float] = {}
    for scope in SCOPES:
        mine = [(p, a) for p, group in zip(prompts, answers) for a in group
                if feedback.scope(p) == scope]  # fmt: skip
        metrics[f"{scope}_keyword_rate"] = sum(
            feedback.keyword in a.split() for _, a in mine
        ) / len(mine)
        if scope == "out":
            metrics["out_gold"] = sum(world.gold_reward(p, a) for p, a in mine) / len(mine)
    for scope, examples in (("near", data.near_scope), ("out", data.out_of_scope)):
        metrics[f"{scope}_logp_shift"] = logp_shift(policy, baseline, examples)
    return metrics


def logp_shift(policy: Policy, baseline: Policy, examples: Sequence[Example]) -> float:
    """Mean ``|log pi(y|x) - log pi_baseline(y|x)|`` over ``examples`` (summed over tokens)."""
    prompts, responses = [p for p, _ in examples], [r for _, r in examples]
    mine, _ = policy.sequence_logps(prompts, responses)
    base, _ = baseline.sequence_logps(prompts, responses)
    return float((mine - base).abs().mean())
