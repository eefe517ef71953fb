"""Every method ``prefloop train-online --method NAME`` reaches, and the one way to run it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefloop.data.records import Prompt
from prefloop.models.policy import Policy
from prefloop.objectives import get_objective
from prefloop.online.judges import Judge
from prefloop.online.loop import Loop, OnlineSettings
from prefloop.online.nash import NASH_CONFIGS, OSPConfig, nash_task
from prefloop.online.policy_gradient import (
    GRPOConfig,
    PolicyGradientSettings,
    PPOConfig,
    ReinforcePPBaselineConfig,
    ReinforcePPConfig,
    RLOOConfig,
    policy_gradient_task,
)
from prefloop.online.preference import (
    DPAConfig,
    IterativeDPOConfig,
    OnlineDPOConfig,
    RAFTConfig,
    preference_task,
)
from prefloop.online.self_judge import PolicyJudge
from prefloop.online.value import ValueModel
from prefloop.train.engine import TrainConfig, TrainResult, fit

ONLINE_METHODS: dict[str, type[OnlineSettings]] = {
    cls.name: cls
    for cls in (
        OnlineDPOConfig,
        IterativeDPOConfig,
        RAFTConfig,
        DPAConfig,
        RLOOConfig,
        GRPOConfig,
        ReinforcePPConfig,
        ReinforcePPBaselineConfig,
        PPOConfig,
        *NASH_CONFIGS,
    )  # fmt: skip
}
#: Learning rates the command line starts from (tiny models; lower for real ones).
LEARNING_RATES = {
    "raft": 1e-3,
    "dpa": 1e-3,
    "online-dpo": 5e-4,
    "iterative-dpo": 5e-4,
    "inpo": 5e-4,
    "dno": 5e-4,
    "osp": 5e-4,
}


def needs_reference(config: OnlineSettings) -> bool:
    if config.reference != "fixed" or isinstance(config, NASH_CONFIGS):
        return True
    if isinstance(config, PolicyGradientSettings):
        return config.beta > 0
    if isinstance(config, OnlineDPOConfig):
        return get_objective(config.objective).requires_reference
    return False


@dataclass
class OnlineRun:
    """What an online run starts from besides its settings."""

    model: Path
    prompts: list[Prompt]
    judge: Judge | None  # None only for osp, whose judge is the policy itself
    value_model: Path | None = None  # PPO's critic start (default: the policy's backbone)


def online_task(config: OnlineSettings, run: OnlineRun, train: TrainConfig):
    """The policy being trained and the engine task of ``config`` on ``run``."""
    policy = Policy.from_pretrained(run.model)
    judge = PolicyJudge(policy) if isinstance(config, OSPConfig) else run.judge
    if judge is None:
        raise ValueError(f"method {config.name!r} needs a judge")
    parts: dict[str, Any] = {"judge": judge, "prompts": run.prompts, "settings": config,
                             "seed": train.seed}  # fmt: skip
    loop = (
        Loop.with_reference(policy, **parts) if needs_reference(config) else Loop(policy, **parts)
    )
    if isinstance(config, PolicyGradientSettings):
        value = None
        if isinstance(config, PPOConfig):
            value = ValueModel.from_pretrained(run.value_model or run.model, str(policy.device))
        return policy, policy_gradient_task(loop, config, train, value)
    if isinstance(config, NASH_CONFIGS):
        return policy, nash_task(loop, config, train)
    return policy, preference_task(loop, config, train)


def train_online(config: OnlineSettings, run: OnlineRun, train: TrainConfig, out_dir: str | Path,
                 **fit_options: Any) -> TrainResult:  # fmt: skip
    """Train ``run.model`` online with ``config`` into ``out_dir``; options go to ``fit``."""
    _, task = online_task(config, run, train)
    return fit(task, train, out_dir, **fit_options)
