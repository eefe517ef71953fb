"""Scalar reward model: a causal-LM backbone with a value head read at the last response token.

It is Hugging Face's ``*ForSequenceClassification`` with one output, so a saved reward model
is an ordinary model directory (``AutoModelForSequenceClassification`` loads it back), and any
causal LM directory can be the starting backbone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from prefloop.data.records import Prompt
from prefloop.models.packing import PairBatch
from prefloop.models.pretrained import PretrainedModel, TokenizedBatch, evaluating


class RewardModel(PretrainedModel):
    """r(x, y): one number per prompt-response pair; higher is better.

    With ``heads`` K > 1 the value head has K independently initialised outputs on the shared
    backbone (an ensemble at the cost of one model); rewards are then [B, K].
    """

    auto_class = AutoModelForSequenceClassification

    def __init__(self, model: PreTrainedModel, tokenizer):
        super().__init__(model, tokenizer)
        model.config.pad_token_id = self.tokenizer.pad_token_id  # the head reads the last non-pad

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        dtype: torch.dtype = torch.float32,
        device: str | None = None,
        seed: int = 0,
        heads: int = 1,
    ) -> RewardModel:
        """Load a saved reward model, or start one from a causal LM directory (new value head).

        ``heads`` must match a saved model's; a causal LM gets ``heads`` fresh outputs.
        """
        if heads < 1:
            raise ValueError(f"a reward model needs at least one head, got heads={heads}")
        torch.manual_seed(seed)
        return cls.load(path, dtype, device, num_labels=heads)

    @property
    def heads(self) -> int:
        return self.config.num_labels

    def forward(self, batch: TokenizedBatch) -> torch.Tensor:
        """Rewards for an encoded batch, with gradients; shape [B], or [B, K] with K heads."""
        batch = batch.to(self.device)
        out = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        logits = out.logits.float()
        return logits.squeeze(-1) if self.heads == 1 else logits

    def pair_rewards(self, batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewards of the chosen and the rejected responses of packed pairs (the prompt computed
        once per pair), read at each response's last token; [B] each, or [B, K] with K heads."""
        batch = batch.to(self.device)
        hidden = self.packed_hidden_states(batch)
        rows = torch.arange(hidden.shape[0], device=hidden.device).unsqueeze(1)
        head = getattr(self.model, "module", self.model).score
        rewards = head(hidden[rows, batch.ends]).float()  # [B, 2, K]
        if self.heads == 1:
            rewards = rewards.squeeze(-1)
        return rewards[:, 0], rewards[:, 1]

    @torch.no_grad()
    def score(
        self, prompts: Sequence[Prompt], responses: Sequence[str], batch_size: int = 128
    ) -> torch.Tensor:
        """Rewards for many pairs, evaluated in batches on the CPU result device."""
        with evaluating(self.model):
            rewards = [
                self.forward(
                    self.encode(prompts[i : i + batch_size], responses[i : i + batch_size])
                ).cpu()
                for i in range(0, len(prompts), batch_size)
            ]
        return torch.cat(rewards) if rewards else torch.empty(0)
