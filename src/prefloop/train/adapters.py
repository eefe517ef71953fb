"""LoRA adapters through ``peft``: train a few low-rank matrices instead of every weight.

A policy with adapters saves only the adapter (``adapter_config.json`` +
``adapter_model.safetensors`` beside the tokenizer); transformers loads such a directory back
onto its base model. :func:`export_merged` writes the adapter folded into the base weights as
an ordinary model directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from peft import LoraConfig, get_peft_model

from prefloop.models.policy import Policy
from prefloop.train.config import setting, validate


@dataclass
class LoraSettings:
    """Low-rank adapters (Hu et al. 2021); ``r = 0`` trains every weight instead."""

    r: int = setting(0, "LoRA rank (0: no adapters, train every weight).", low=0)
    alpha: float = setting(16.0, "LoRA α; the update is scaled by α / r.", low=0, low_open=True)
    dropout: float = setting(0.0, "Dropout on the adapters' input.", low=0, high=1, high_open=True)
    targets: str = setting(
        "all-linear", "Modules that get adapters: all-linear, or names such as q_proj,v_proj."
    )
    merge: bool = setting(False, "Also write the adapter merged into the weights to OUT/merged.")

    def __post_init__(self) -> None:
        validate(self, "LoRA settings")

    @property
    def enabled(self) -> bool:
        return self.r > 0


def apply_lora(policy: Policy, settings: LoraSettings) -> Policy:
    """Freeze ``policy``'s weights and give it trainable adapters (in place)."""
    targets = (
        settings.targets
        if settings.targets == "all-linear"
        else [name.strip() for name in settings.targets.split(",") if name.strip()]
    )
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    policy.model = get_peft_model(policy.model, config)
    return policy


def export_merged(policy: Policy, out_dir: str | Path) -> Path:
    """Write the adapter merged into the base weights to ``out_dir`` (a plain model directory).

    Merging is in place (no second copy of the weights): the policy holds the merged model
    afterwards.
    """
    out_dir = Path(out_dir)
    policy.model = policy.model.merge_and_unload(safe_merge=True)
    policy.model.save_pretrained(out_dir)
    policy.tokenizer.save_pretrained(out_dir)
    return out_dir
