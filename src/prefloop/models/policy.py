"""``Policy``: any Hugging Face causal LM + tokenizer, seen as a distribution over responses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from prefloop.data.records import Prompt
from prefloop.models.pretrained import PretrainedModel, TokenizedBatch, default_device, evaluating

__all__ = ["Policy", "TokenizedBatch", "default_device", "gather_token_logps"]


def gather_token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label) per position without materialising the full log-softmax over the vocabulary."""
    picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return picked.float() - torch.logsumexp(logits.float(), dim=-1)


class Policy(PretrainedModel):
    """Batched, masked response log-probabilities and KV-cached sampling for a causal LM."""

    auto_class = AutoModelForCausalLM

    @classmethod
    def from_pretrained(
        cls, path: str | Path, dtype: torch.dtype = torch.float32, device: str | None = None
    ) -> Policy:
        return cls.load(path, dtype, device)

    # ---- log-probabilities ---------------------------------------------------------------
    def token_logps(self, batch: TokenizedBatch) -> torch.Tensor:
        """log π(token | prefix) at each position, zero outside the response; shape [B, T-1]."""
        batch = batch.to(self.device)
        logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        labels = batch.input_ids[:, 1:]
        logps = gather_token_logps(logits[:, :-1], labels)
        return logps * batch.response_mask[:, 1:]

    @torch.no_grad()
    def sequence_logps(
        self, prompts: Sequence[Prompt], responses: Sequence[str], batch_size: int = 64
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed response log-probs and response token counts, on the CPU, without gradients."""
        sums, lengths = [], []
        with evaluating(self.model):
            for start in range(0, len(prompts), batch_size):
                chunk = slice(start, start + batch_size)
                batch = self.encode(prompts[chunk], responses[chunk])
                sums.append(self.token_logps(batch).sum(-1).cpu())
                lengths.append(batch.response_lengths)
        return torch.cat(sums), torch.cat(lengths)

    # ---- sampling ------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[Prompt],
        num_samples: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 64,
        seed: int = 0,
        batch_size: int = 64,
    ) -> list[list[str]]:
        """``num_samples`` responses per prompt (KV-cached decoding); temperature 0 is greedy."""
        if temperature > 0:
            decoding = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
        else:
            decoding = {"do_sample": False}
        outputs: list[list[str]] = []
        devices = [self.device] if self.device.type == "cuda" else []
        with evaluating(self.model), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for start in range(0, len(prompts), batch_size):
                input_ids, attention = self._left_padded(
                    self.prompt_ids(prompts[start : start + batch_size])
                )
                generated = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=attention,
                    max_new_tokens=max_new_tokens,
                    num_return_sequences=num_samples,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.tokenizer.eos_token_id,
                    **decoding,
                )
                new_tokens = generated[:, input_ids.shape[1] :]
                texts = [
                    t.strip()
                    for t in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
                ]
                outputs += [texts[i : i + num_samples] for i in range(0, len(texts), num_samples)]
        return outputs

    def _left_padded(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts padded on the left, so every row's next token comes at the same position."""
        width = max(len(row) for row in ids)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(row)) + row for row in ids])
        attention = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in ids])
        return input_ids.to(self.device), attention.to(self.device)
