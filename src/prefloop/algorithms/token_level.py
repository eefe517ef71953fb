"""From r to Q* (Rafailov et al. 2024): a DPO policy's per-token rewards and search with them.

``beta * log(pi / pi_ref)`` at each response token is the implicit token-level reward of any
trained policy; it sums to the sequence implicit reward. Beam search on the policy's
likelihood, or directly on the cumulative implicit reward, is the paper's inference-time use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from prefloop.data.records import Prompt
from prefloop.models.policy import Policy
from prefloop.objectives import token_rewards


@contextmanager
def _evaluating(*policies: Policy):
    modes = [p.model.training for p in policies]
    for p in policies:
        p.model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for p, mode in zip(policies, modes):
            p.model.train(mode)


@dataclass
class TokenRewards:
    """Response tokens of one example and the implicit reward of each."""

    tokens: list[str]
    rewards: list[float]

    @property
    def total(self) -> float:
        return float(sum(self.rewards))


def token_implicit_rewards(
    policy: Policy,
    reference: Policy,
    prompts: Sequence[Prompt],
    responses: Sequence[str],
    beta: float = 0.1,
) -> list[TokenRewards]:
    """Per-token ``beta * (log pi - log pi_ref)`` of each response (EOS included).

    ``policy`` and ``reference`` must share a tokenizer (e.g. a trained policy and its SFT start).
    """
    batch = policy.encode(prompts, responses)
    with _evaluating(policy, reference):
        rewards = token_rewards(
            policy.token_logps(batch).cpu(),
            reference.token_logps(batch).cpu(),
            batch.response_mask[:, 1:],
            beta,
        )
    out = []
    for ids, mask, row in zip(batch.input_ids[:, 1:], batch.response_mask[:, 1:], rewards):
        keep = mask.bool()
        tokens = policy.tokenizer.convert_ids_to_tokens(ids[keep].tolist())
        out.append(TokenRewards(tokens, row[keep].tolist()))
    return out


@dataclass
class Beam:
    """A searched continuation: its token ids, text, cumulative score and whether it ended."""

    token_ids: list[int]
    text: str
    score: float
    finished: bool


def _next_token_logps(policy: Policy, prefixes: torch.Tensor) -> torch.Tensor:
    logits = policy.model(input_ids=prefixes.to(policy.device)).logits[:, -1]
    return torch.log_softmax(logits.float(), dim=-1).cpu()


def beam_search(
    policy: Policy,
    prompt: Prompt,
    beam_width: int = 4,
    max_new_tokens: int = 48,
    reference: Policy | None = None,
    beta: float = 0.1,
    candidates: int | None = None,
) -> list[Beam]:
    """Beam search over continuations of ``prompt``, best first.

    Without ``reference`` the score is the likelihood ``sum log pi`` (the paper's likelihood
    search on a DPO policy); with it, the cumulative implicit reward
    ``sum beta * (log pi - log pi_ref)``. ``candidates`` limits each expansion to the policy's
    top tokens (None: every token but the special ones other than EOS). Every beam that emits
    EOS is kept as finished; unfinished beams at ``max_new_tokens`` compete too.
    """
    tokenizer = policy.tokenizer
    eos = tokenizer.eos_token_id
    banned = [i for i in tokenizer.all_special_ids if i != eos]
    prompt_ids = policy.prompt_ids([prompt])[0]
    live: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[tuple[list[int], float]] = []
    with _evaluating(policy, *([reference] if reference else [])):
        for _ in range(max_new_tokens):
            prefixes = torch.tensor([prompt_ids + ids for ids, _ in live])
            logps = _next_token_logps(policy, prefixes)
            scores = (
                logps
                if reference is None
                else beta * (logps - _next_token_logps(reference, prefixes))
            )
            allowed = torch.ones_like(logps, dtype=torch.bool)
            allowed[:, banned] = False
            if candidates is not None:
                top = logps.masked_fill(~allowed, float("-inf")).topk(candidates, dim=-1).indices
                allowed &= torch.zeros_like(allowed).scatter_(1, top, True)
            totals = torch.tensor([s for _, s in live])[:, None] + scores
            totals = totals.masked_fill(~allowed, float("-inf"))
            for b, (ids, _) in enumerate(live):
                if allowed[b, eos]:
                    finished.append((ids + [eos], totals[b, eos].item()))
            totals[:, eos] = float("-inf")
            flat = totals.flatten()
            count = min(beam_width, int(torch.isfinite(flat).sum()))
            if count == 0:
                live = []
                break
            best = flat.topk(count).indices.tolist()
            width = totals.shape[1]
            live = [(live[i // width][0] + [i % width], flat[i].item()) for i in best]
            if reference is None and finished and max(s for _, s in finished) >= live[0][1]:
                break  # likelihood only falls: no live beam can overtake the best finished one
    beams = [Beam(ids, tokenizer.decode(ids, skip_special_tokens=True).strip(), s, True)
             for ids, s in finished]  # fmt: skip
    beams += [Beam(ids, tokenizer.decode(ids, skip_special_tokens=True).strip(), s, False)
              for ids, s in live]  # fmt: skip
    return sorted(beams, key=lambda beam: -beam.score)


def compare_decoding(
    policy: Policy,
    reference: Policy,
    prompts: Sequence[str],
    gold: Callable[[str, str], float],
    beam_width: int = 4,
    beta: float = 0.1,
    candidates: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Mean ``gold(prompt, response)`` of sampling, likelihood beam search and reward-guided
    beam search (over the policy's top ``candidates`` tokens) with the same trained policy."""
    sampled = [group[0] for group in policy.generate(list(prompts), seed=seed)]
    likelihood = [beam_search(policy, p, beam_width)[0].text for p in prompts]
    guided = [beam_search(policy, p, beam_width, reference=reference, beta=beta,
                          candidates=candidates)[0].text for p in prompts]  # fmt: skip
    return {
        name: sum(gold(p, r) for p, r in zip(prompts, responses)) / len(prompts)
        for name, responses in (
            ("sample", sampled),
            ("likelihood_beam", likelihood),
            ("reward_guided_beam", guided),
        )  # fmt: skip
    }
