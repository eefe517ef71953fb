"""Sampling K completions per prompt from a policy, with the prompt encoded once.

:class:`TransformersGenerator` runs the decoding loop itself over a Hugging Face causal LM:
each prompt is prefilled once and its KV cache repeated for its K samples; finished rows
leave the batch; every sampled token's log-prob comes out of the same forward pass that chose
it. The vLLM backend (:mod:`prefloop.online.vllm_generator`) has the same interface;
:func:`make_generator` picks it when vLLM is installed and a GPU is present.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import torch

from prefloop.data.records import Prompt
from prefloop.models.policy import Policy
from prefloop.models.pretrained import evaluating
from prefloop.online.rollout import Decoding, Rollout


class Generator(Protocol):
    """Samples ``k`` completions for each prompt; ``seed`` fixes every random choice."""

    def generate(
        self, policy: Policy, prompts: Sequence[Prompt], k: int, decoding: Decoding, seed: int
    ) -> Rollout: ...

    def sync(self, policy: Policy) -> None:
        """Take the policy's current weights (a no-op when sampling from the policy itself)."""
        ...


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Logits with tokens outside the top-k / top-p (nucleus) set at −inf."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(logits, dim=-1, descending=True)
        mass_before = torch.softmax(ordered, dim=-1).cumsum(-1) - torch.softmax(ordered, dim=-1)
        drop = mass_before >= top_p  # keep the smallest prefix whose mass reaches top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


class TransformersGenerator:
    """The default backend: KV-cached decoding on the policy's own model (CPU or GPU)."""

    def __init__(self, prompt_batch: int = 64) -> None:
        self.prompt_batch = prompt_batch

    def sync(self, policy: Policy) -> None:
        pass  # samples come from the live model

    @torch.no_grad()
    def generate(
        self, policy: Policy, prompts: Sequence[Prompt], k: int, decoding: Decoding, seed: int
    ) -> Rollout:
        started = time.perf_counter()
        model = getattr(policy.model, "module", policy.model)  # unwrap DDP
        random = torch.Generator(device=policy.device).manual_seed(seed)
        all_ids = policy.prompt_ids(prompts)
        limit = max(1, policy.max_length - decoding.max_new_tokens)
        all_ids = [ids[-limit:] for ids in all_ids]
        completions: list[list[int]] = []
        logps: list[torch.Tensor] = []
        finished: list[bool] = []
        with evaluating(model):
            for start in range(0, len(all_ids), self.prompt_batch):
                chunk = all_ids[start : start + self.prompt_batch]
                c, lp, f = self._sample(model, policy, chunk, k, decoding, random)
                completions += c
                logps += lp
                finished += f
        texts = [policy.tokenizer.decode(ids, skip_special_tokens=True).strip()
                 for ids in completions]  # fmt: skip
        rollout = Rollout(list(prompts), all_ids, k, completions, logps, finished, texts,
                          time.perf_counter() - started)  # fmt: skip
        rollout.metrics["generation_tokens_per_second"] = rollout.tokens_per_second
        return rollout

    def _sample(self, model, policy: Policy, prompt_ids: list[list[int]], k: int,
                decoding: Decoding, random: torch.Generator):  # fmt: skip
        device = policy.device
        tokenizer = policy.tokenizer
        eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
        width = max(len(ids) for ids in prompt_ids)
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in prompt_ids], device=device)
        attention = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in prompt_ids],
                                 device=device)  # fmt: skip
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                    use_cache=True, logits_to_keep=1)  # fmt: skip
        cache = out.cache
        cache.batch_repeat_interleave(k)  # the prompt was encoded once for its k samples
        logits = out.logits[:, -1].repeat_interleave(k, 0)
        attention = attention.repeat_interleave(k, 0)
        next_position = positions[:, -1:].repeat_interleave(k, 0) + 1
        rows = len(prompt_ids) * k
        tokens: list[list[int]] = [[] for _ in range(rows)]
        token_logps: list[list[torch.Tensor]] = [[] for _ in range(rows)]
        done = [False] * rows
        active = torch.arange(rows, device=device)  # sample id of each batch row
        for _ in range(decoding.max_new_tokens):
            scaled = logits.float() / (decoding.temperature or 1.0)
            log_probs = torch.log_softmax(scaled, dim=-1)
            if decoding.temperature == 0:
                chosen = scaled.argmax(-1)
            else:
                weights = filter_logits(scaled, decoding.top_k, decoding.top_p).softmax(-1)
                chosen = torch.multinomial(weights, 1, generator=random).squeeze(-1)
            picked = log_probs.gather(-1, chosen[:, None]).squeeze(-1)
            keep = []
            for row, (sample, token) in enumerate(zip(active.tolist(), chosen.tolist())):
                tokens[sample].append(token)
                token_logps[sample].append(picked[row])
                if token == eos or self._stopped(tokenizer, tokens[sample], decoding.stop):
                    done[sample] = True
                else:
                    keep.append(row)
            if not keep:
                break
            if len(keep) < len(active):  # finished rows leave the batch
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                active, attention = active[index], attention[index]
                chosen, next_position = chosen[index], next_position[index]
            attention = torch.cat([attention, attention.new_ones(len(active), 1)], dim=-1)
            out = model(input_ids=chosen[:, None], attention_mask=attention,
                        position_ids=next_position, cache=cache, use_cache=True)  # fmt: skip
            logits = out.logits[:, -1]
            next_position = next_position + 1
        stacked = [torch.stack(lp).float().cpu() if lp else torch.zeros(0) for lp in token_logps]
        return tokens, stacked, done

    @staticmethod
    def _stopped(tokenizer, ids: list[int], stop: tuple[str, ...]) -> bool:
        if not stop:
            return False
        tail = tokenizer.decode(ids[-8:], skip_special_tokens=True)
        return any(s in tail for s in stop)


def make_generator(backend: str = "auto", **options) -> Generator:
    """``transformers``, ``vllm``, or ``auto`` (vLLM when installed and a GPU is present)."""
    from prefloop.online import vllm_generator

    if backend == "auto":
        backend = "vllm" if vllm_generator.available() else "transformers"
    if backend == "transformers":
        return TransformersGenerator(**options)
    if backend == "vllm":
        return vllm_generator.VLLMGenerator(**options)
    raise ValueError(f"generator backend must be auto, transformers or vllm, got {backend!r}")
