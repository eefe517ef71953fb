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
from transformers.cache_utils import DynamicLayer

from prefloop.data.records import Prompt
from prefloop.models.policy import Policy
from prefloop.models.pretrained import evaluating
from prefloop.online.logps import left_padded
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
        steps = decoding.max_new_tokens
        input_ids, attention, positions = left_padded(prompt_ids, pad, device)
        width = input_ids.shape[1]
        out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                    use_cache=True, logits_to_keep=1)  # fmt: skip
        cache = out.cache
        repeat_for_samples(cache, k, steps)  # the prompt was encoded once for its k samples
        logits = out.logits[:, -1].repeat_interleave(k, 0)
        rows = len(prompt_ids) * k
        # the attention mask of every step is a prefix of one buffer; generated tokens attend
        attention = torch.cat([attention.repeat_interleave(k, 0),
                               attention.new_ones(rows, steps)], dim=-1)  # fmt: skip
        next_position = positions[:, -1:].repeat_interleave(k, 0) + 1
        tokens = torch.full((rows, steps), pad, dtype=torch.long, device=device)
        token_logps = torch.zeros(rows, steps, device=device)
        ends = torch.full((rows,), steps, device=device)  # completion length of each sample
        sample = torch.arange(rows, device=device)  # sample id of each batch row
        running = torch.ones(rows, dtype=torch.bool, device=device)  # rows not yet finished
        finished = torch.zeros(rows, dtype=torch.bool, device=device)
        for step in range(steps):
            chosen, picked = _choose(logits, decoding, random)
            tokens[sample, step], token_logps[sample, step] = chosen, picked
            ended = running & (chosen == eos)
            if decoding.stop:
                ended |= self._stop_rows(tokenizer, tokens, sample, running, step, decoding.stop)
            ends[sample[ended]] = step + 1
            finished[sample[ended]] = True
            running &= ~ended
            left = int(running.sum())
            if left == 0 or step + 1 == steps:
                break
            # finished rows leave the batch once they are a quarter of it: re-indexing every
            # layer's cache for each one that ends would cost more than the rows it saves
            if len(running) - left >= max(1, len(running) // 4):
                index = running.nonzero().squeeze(-1)
                cache.batch_select_indices(index)
                sample, running, chosen = sample[index], running[index], chosen[index]
                attention, next_position = attention[index], next_position[index]
            length = width + step + 1
            out = model(input_ids=chosen[:, None], attention_mask=attention[:, : length],
                        position_ids=next_position, cache=cache, use_cache=True)  # fmt: skip
            logits = out.logits[:, -1]
            next_position = next_position + 1
        lengths = ends.tolist()
        completions = [ids[:n] for ids, n in zip(tokens.tolist(), lengths)]
        logps = [lp[:n].clone() for lp, n in zip(token_logps.cpu(), lengths)]
        return completions, logps, finished.tolist()

    @classmethod
    def _stop_rows(cls, tokenizer, tokens: torch.Tensor, sample: torch.Tensor,
                   running: torch.Tensor, step: int, stop: tuple[str, ...]):  # fmt: skip
        """Which batch rows a stop string has just ended (a bool per row)."""
        ended = torch.zeros_like(running)
        tails = tokens[sample, max(0, step - 7) : step + 1].tolist()
        for row in running.nonzero().squeeze(-1).tolist():
            ended[row] = cls._stopped(tokenizer, tails[row], stop)
        return ended

    @staticmethod
    def _stopped(tokenizer, ids: list[int], stop: tuple[str, ...]) -> bool:
        tail = tokenizer.decode(ids[-8:], skip_special_tokens=True)
        return any(s in tail for s in stop)


def _choose(logits: torch.Tensor, decoding: Decoding, random: torch.Generator):
    """Each row's next token and its log-prob at the sampling temperature (before top-k/p)."""
    scaled = logits.float() / (decoding.temperature or 1.0)
    normaliser = scaled.logsumexp(-1, keepdim=True)
    if decoding.temperature == 0:
        chosen = scaled.argmax(-1)
    else:
        kept = filter_logits(scaled, decoding.top_k, decoding.top_p)
        chosen = sample_categorical((kept - normaliser).exp(), random)
    picked = scaled.gather(-1, chosen[:, None]) - normaliser
    return chosen, picked.squeeze(-1)


def sample_categorical(weights: torch.Tensor, random: torch.Generator) -> torch.Tensor:
    """One index per row, drawn with probability proportional to its non-negative weight.

    Inverts each row's cumulative weights at one uniform draw: ``torch.multinomial`` draws an
    exponential variate per vocabulary entry instead, which made it most of a CPU decoding
    step. A zero-weight entry is never drawn (its cumulative weight equals its predecessor's).
    """
    cumulative = weights.double().cumsum(-1)
    target = torch.rand(len(weights), 1, generator=random, device=weights.device,
                        dtype=cumulative.dtype) * cumulative[:, -1:]  # fmt: skip
    index = torch.searchsorted(cumulative, target, right=True).squeeze(-1)
    return index.clamp(max=weights.shape[-1] - 1)


def repeat_for_samples(cache, k: int, steps: int) -> None:
    """Repeat a prompt batch's KV cache for its ``k`` samples each, in place.

    The keys are copied into buffers that hold the whole completion (``steps`` more tokens), so
    a step writes in place; caches with other layer kinds (e.g. sliding windows) are repeated
    as they are. A cache of several models (:mod:`prefloop.online.mixture`) repeats each one.
    """
    if hasattr(cache, "repeat_for_samples"):
        cache.repeat_for_samples(k, steps)
    elif all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [_PreallocatedLayer(layer, k, steps) for layer in cache.layers]
    else:
        cache.batch_repeat_interleave(k)


class _PreallocatedLayer(DynamicLayer):
    """One layer's KV cache in buffers long enough for every step: a step writes its keys in
    place, where :class:`DynamicLayer` concatenates (copying the whole cache every step)."""

    def __init__(self, prompt: DynamicLayer, k: int, steps: int) -> None:
        super().__init__()
        keys, values = prompt.keys, prompt.values
        rows, heads, length, dim = keys.shape
        self._keys = keys.new_empty(rows * k, heads, length + steps, dim)
        self._values = values.new_empty(rows * k, heads, length + steps, values.shape[-1])
        self._keys[:, :, :length] = keys.repeat_interleave(k, 0)
        self._values[:, :, :length] = values.repeat_interleave(k, 0)
        self.keys, self.values = self._keys[:, :, :length], self._values[:, :, :length]
        self.device, self.is_initialized = keys.device, True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        rows, length = self.keys.shape[0], self.keys.shape[-2]
        end = length + key_states.shape[-2]
        self._keys[:rows, :, length:end] = key_states
        self._values[:rows, :, length:end] = value_states
        self.keys, self.values = self._keys[:rows, :, :end], self._values[:rows, :, :end]
        return self.keys, self.values

    def batch_select_indices(self, index: torch.Tensor) -> None:
        """Keep the batch rows ``index``, moved to the front of the buffers."""
        rows, length = len(index), self.keys.shape[-2]
        self._keys[:rows, :, :length] = self.keys[index]
        self._values[:rows, :, :length] = self.values[index]
        self.keys, self.values = self._keys[:rows, :, :length], self._values[:rows, :, :length]


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
