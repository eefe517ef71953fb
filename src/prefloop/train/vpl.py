"""Training the personalized (VPL) reward model on comparisons grouped by user."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import save_model

from prefloop.data.records import Comparison
from prefloop.models.personalized import Embedder, VPLRewardModel
from prefloop.objectives import vpl_loss
from prefloop.train.caches import data_fingerprint
from prefloop.train.config import setting, validate
from prefloop.train.engine import Task, Trainable, TrainConfig, TrainResult, fit
from prefloop.train.sources import IndexSource


@dataclass
class VPLConfig:
    """Variational Preference Learning (Poddar et al. 2024): a latent user from context pairs."""

    name: ClassVar[str] = "vpl"
    kind: ClassVar[str] = "reward"
    context_size: int = setting(8, "Pairs of the same user that infer its latent.", low=1)
    kl_weight: float = setting(0.01, "Weight of KL(q(z | context) ‖ N(0, I)).", low=0)

    def __post_init__(self) -> None:
        validate(self, f"method {self.name!r}")


class PersonalizedPairs:
    """Embedded comparisons grouped by user (``Comparison.annotator``), for VPL training."""

    def __init__(self, comparisons: Sequence[Comparison], embed: Embedder):
        prompts = [c.prompt for c in comparisons]
        self.chosen = embed(prompts, [c.chosen for c in comparisons])
        self.rejected = embed(prompts, [c.rejected for c in comparisons])
        self.strengths = torch.tensor([1.0 if c.strength is None else c.strength
                                       for c in comparisons])  # fmt: skip
        self.margins = torch.tensor([c.margin or 0.0 for c in comparisons])
        self.users = [c.annotator or "anonymous" for c in comparisons]
        self.by_user: dict[str, list[int]] = {}
        for i, user in enumerate(self.users):
            self.by_user.setdefault(user, []).append(i)
        self.fingerprint = data_fingerprint(comparisons)

    def __len__(self) -> int:
        return len(self.users)

    def context(self, targets: Sequence[int], size: int) -> torch.Tensor:
        """For each target pair, ``size`` other pairs of the same user (with replacement),
        drawn from torch's generator so a resumed run draws the same ones."""
        rows = []
        for i in targets:
            pool = [j for j in self.by_user[self.users[i]] if j != i] or [i]
            rows.append([pool[k] for k in torch.randint(len(pool), (size,)).tolist()])
        return torch.tensor(rows)


@dataclass
class _Holder:
    """The VPL module where the engine can swap in its prepared wrapper."""

    model: VPLRewardModel


def vpl_task(
    model: VPLRewardModel, data: PersonalizedPairs, config: TrainConfig, method: VPLConfig
) -> Task:
    """The ELBO of VPL, or the plain BT head on the same features (``personalized=False``)."""
    holder = _Holder(model)
    kl_weight = method.kl_weight if model.personalized else 0.0

    def loss(indices: list[int]):
        context = data.context(indices, method.context_size)
        chosen, rejected, mu, logvar = holder.model(
            data.chosen[indices], data.rejected[indices], data.chosen[context],
            data.rejected[context],
        )  # fmt: skip
        value, nll, kl = vpl_loss(chosen, rejected, mu, logvar, kl_weight,
                                  data.margins[indices], data.strengths[indices])  # fmt: skip
        accuracy = (chosen > rejected).float().mean().item()
        return value, {"nll": nll.item(), "kl": kl.item(), "accuracy": accuracy}

    def save(path: Path) -> None:
        save_model(holder.model, str(path / "model.safetensors"))

    return Task(
        "vpl",
        IndexSource(len(data), config.batch_size, config.seed),
        loss,
        [Trainable(holder)],
        save,
        {"method": vars(method), "personalized": model.personalized, "data": data.fingerprint},
    )


def train_vpl(
    model: VPLRewardModel,
    data: PersonalizedPairs,
    config: TrainConfig,
    out_dir: str | Path,
    method: VPLConfig | None = None,
    **run: Any,
) -> TrainResult:
    """Fit the VPL model; ``run`` goes to :func:`fit`."""
    return fit(vpl_task(model, data, config, method or VPLConfig()), config, out_dir, **run)
