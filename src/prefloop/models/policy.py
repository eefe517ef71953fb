"""``Policy``: any Hugging Face causal LM + tokenizer, seen as a distribution over responses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.checkpoint import checkpoint
from transformers import AutoModelForCausalLM

from prefloop.data.records import Prompt
from prefloop.models.packing import PairBatch, ScoredTokens
from prefloop.models.pretrained import PretrainedModel, TokenizedBatch, default_device, evaluating

__all__ = ["Policy", "TokenizedBatch", "default_device", "gather_token_logps", "head_logps"]

#: Scored tokens per LM-head chunk when the logits are not all kept.
HEAD_CHUNK = 1024
#: Logits up to this size (bytes) are computed in one product and kept for backward; larger
#: ones are computed a chunk at a time and, with gradients, each chunk recomputed in backward.
HEAD_KEEP_BYTES = 128 * 2**20


def gather_token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label) per position without materialising the full log-softmax over the vocabulary."""
    picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return picked.float() - torch.logsumexp(logits.float(), dim=-1)


def _chunk_logps(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor):
    return gather_token_logps(hidden @ weight.T, labels)


def head_logps(
    hidden: torch.Tensor,
    head: torch.nn.Module,
    tokens: ScoredTokens,
    chunk: int = HEAD_CHUNK,
    keep_bytes: int = HEAD_KEEP_BYTES,
) -> torch.Tensor:
    """log p(label) of the scored tokens only, from the final hidden states [B, T, H].

    Small [tokens × vocab] logits are one product, kept for backward. Larger ones run
    ``chunk`` tokens at a time, and with gradients each chunk's logits are recomputed in
    backward instead of kept, so they never all sit in memory (the recompute costs a third
    more head FLOPs, which only pays where memory is short).
    """
    picked = hidden.flatten(0, 1).index_select(0, tokens.sources)
    weight = head.weight
    if len(picked) * len(weight) * max(picked.element_size(), 4) <= keep_bytes:
        return _chunk_logps(picked, weight, tokens.labels)
    parts = []
    for start in range(0, len(picked), chunk):
        args = (picked[start : start + chunk], weight, tokens.labels[start : start + chunk])
        if torch.is_grad_enabled():
            parts.append(checkpoint(_chunk_logps, *args, use_reentrant=False))
        else:
            parts.append(_chunk_logps(*args))
    return torch.cat(parts)


class Policy(PretrainedModel):
    """Batched, masked response log-probabilities and KV-cached sampling for a causal LM."""

    auto_class = AutoModelForCausalLM

    @classmethod
    def from_pretrained(
        cls, path: str | Path, dtype: torch.dtype = torch.float32, device: str | None = None
    ) -> Policy:
        return cls.load(path, dtype, device)

    # ---- log-probabilities ---------------------------------------------------------------
    def _scored_logps(
        self, tokens: ScoredTokens, inputs: dict[str, torch.Tensor] | None = None,
        packed: PairBatch | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """log π of the scored tokens of an encoded batch (``inputs``) or of packed pairs.

        A plain linear LM head runs on those tokens only (see :func:`head_logps`), after the
        model's own forward (so a data-parallel wrapper sees the call) with its head at one
        position; a head that scales, caps or biases its logits (e.g. Gemma's soft-capping)
        runs the model's full forward instead.
        """
        model = getattr(self.model, "module", self.model)
        head = model.get_output_embeddings()
        config = model.config.get_text_config()
        changed = [
            getattr(config, k, None)
            for k in ("final_logit_softcapping", "logit_scale", "logits_scaling",
                      "output_multiplier")
        ]  # fmt: skip
        if getattr(head, "bias", None) is None and all(v in (None, 1, 1.0) for v in changed):
            if packed is not None:
                hidden = self.packed_hidden_states(packed, logits_to_keep=1, use_cache=False)
            else:
                hidden = self.padded_hidden_states(**inputs, logits_to_keep=1, use_cache=False)
            return head_logps(hidden, head, tokens)
        inputs = self.packed_inputs(packed) if packed is not None else inputs
        logits = self.model(**inputs, use_cache=False).logits.flatten(0, 1)
        return gather_token_logps(logits.index_select(0, tokens.sources), tokens.labels)

    def token_logps(self, batch: TokenizedBatch) -> torch.Tensor:
        """log π(token | prefix) at each position, zero outside the response; shape [B, T-1].

        Only response positions go through the LM head (see :func:`head_logps`).
        """
        batch = batch.to(self.device)
        rows, width = batch.input_ids.shape
        targets = batch.response_mask[:, 1:].flatten().nonzero().squeeze(-1)
        row = targets // (width - 1)
        sources = row * width + targets % (width - 1)  # position t predicts token t + 1
        labels = batch.input_ids[:, 1:].flatten()[targets]
        inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        logps = self._scored_logps(ScoredTokens(sources, labels, row), inputs)
        flat = torch.zeros(rows * (width - 1), dtype=logps.dtype, device=logps.device)
        return flat.index_put((targets,), logps).view(rows, width - 1)

    def pair_logps(self, batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed log-probs of the chosen and of the rejected responses of packed pairs [B]."""
        batch = batch.to(self.device)
        logps = self._scored_logps(batch.scored, packed=batch)
        rows = batch.input_ids.shape[0]
        sums = logps.new_zeros(2 * rows).index_add(0, batch.scored.sequences, logps)
        return sums[:rows], sums[rows:]

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
