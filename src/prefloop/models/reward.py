"""Scalar reward model: a causal-LM backbone with a value head read at the last response token.

It is Hugging Face's ``*ForSequenceClassification`` with one output, so a saved reward model
is an ordinary model directory (``AutoModelForSequenceClassification`` loads it back), and any
causal LM directory can be the starting backbone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from prefloop.data.records import Prompt
from prefloop.models.policy import Policy, TokenizedBatch, default_device


class RewardModel:
    """r(x, y): one number per prompt-response pair; higher is better."""

    def __init__(self, model: PreTrainedModel, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        # Reuse the policy's tokenization so rewards and log-probs see identical token streams.
        self._encoder = Policy(model, tokenizer)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        dtype: torch.dtype = torch.float32,
        device: str | None = None,
        seed: int = 0,
    ) -> RewardModel:
        """Load a saved reward model, or start one from a causal LM directory (new value head)."""
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
        model.to(device or default_device())
        return cls(model, AutoTokenizer.from_pretrained(path))

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> TokenizedBatch:
        return self._encoder.encode(prompts, responses)

    def forward(self, batch: TokenizedBatch) -> torch.Tensor:
        """Rewards for an encoded batch, with gradients; shape [B]."""
        batch = batch.to(self.device)
        out = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        return out.logits.squeeze(-1).float()

    @torch.no_grad()
    def score(
        self, prompts: Sequence[Prompt], responses: Sequence[str], batch_size: int = 128
    ) -> torch.Tensor:
        """Rewards for many pairs, evaluated in batches on the CPU result device."""
        was_training = self.model.training
        self.model.eval()
        rewards = [
            self.forward(
                self.encode(prompts[i : i + batch_size], responses[i : i + batch_size])
            ).cpu()
            for i in range(0, len(prompts), batch_size)
        ]
        self.model.train(was_training)
        return torch.cat(rewards) if rewards else torch.empty(0)
