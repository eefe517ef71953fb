"""Non-pairwise feedback turned into labels or scores: HERON and FLR.

**HERON** (Bukharin et al., hierarchical weak preferences): the user only ranks reward factors
by importance and gives each a margin δ_i. Two responses are compared factor by factor in that
order; the first factor whose values differ by more than δ_i decides. If none does, the pair is
a tie (strength 0.5) — or dropped, with ``ties="drop"``.

**FLR** (Zhang et al., follow-up likelihood as reward): a language model's likelihood of a
positive vs. a negative follow-up utterance after the response,
FLR(x, y) = mean_{f ∈ F+} ℓ(f | x, y) − mean_{f ∈ F−} ℓ(f | x, y), with ℓ the token-averaged
log-probability (the paper's definition; the released scorer averages raw logits instead).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prefloop.data.records import Comparison
from prefloop.models.policy import Policy

#: Follow-ups in the review world's vocabulary (so the tiny tokenizer covers them).
POSITIVE_FOLLOW_UPS = ("i love it .", "it is great .", "really good .")
NEGATIVE_FOLLOW_UPS = ("i hate it .", "it is awful .", "really bad .")


def heron_compare(
    first: dict[str, float],
    second: dict[str, float],
    ranking: Sequence[str],
    margins: Sequence[float],
) -> float:
    """1.0 if ``first`` wins, 0.0 if ``second`` wins, 0.5 if no factor separates them."""
    for factor, delta in zip(ranking, margins):
        difference = first[factor] - second[factor]
        if abs(difference) > delta:
            return 1.0 if difference > 0 else 0.0
    return 0.5


@dataclass
class HeronTeacher:
    """Labels pairs by the world's gold aspects compared hierarchically (see module docstring)."""

    factors: Callable[[str, str], dict[str, float]]  # (prompt, response) -> factor values
    ranking: Sequence[str]
    margins: Sequence[float]
    ties: str = "soft"  # "soft": strength 0.5; "drop": leave the pair out
    annotator_id: str = "heron"

    def label_pairs(self, triples: Sequence[tuple[str, str, str]]) -> list[Comparison]:
        out = []
        for prompt, a, b in triples:
            outcome = heron_compare(self.factors(prompt, a), self.factors(prompt, b),
                                    self.ranking, self.margins)  # fmt: skip
            if outcome == 0.5 and self.ties == "drop":
                continue
            chosen, rejected = (b, a) if outcome == 0.0 else (a, b)
            out.append(Comparison(prompt, chosen, rejected, strength=max(outcome, 1 - outcome),
                                  annotator=self.annotator_id))  # fmt: skip
        return out


def follow_up_likelihood_reward(
    policy: Policy,
    prompts: Sequence[str],
    responses: Sequence[str],
    positive: Sequence[str] = POSITIVE_FOLLOW_UPS,
    negative: Sequence[str] = NEGATIVE_FOLLOW_UPS,
) -> list[float]:
    """FLR score per (prompt, response): the follow-up is the text after ``prompt response``."""
    contexts = [f"{p} {r}" for p, r in zip(prompts, responses)]

    def mean_token_logp(follow_ups: Sequence[str]) -> list[float]:
        totals = [0.0] * len(contexts)
        for follow_up in follow_ups:
            logps, lengths = policy.sequence_logps(contexts, [follow_up] * len(contexts))
            for i, value in enumerate((logps / lengths).tolist()):
                totals[i] += value / len(follow_ups)
        return totals

    return [p - n for p, n in zip(mean_token_logp(positive), mean_token_logp(negative))]


def flr_label_pairs(
    policy: Policy, triples: Sequence[tuple[str, str, str]], annotator_id: str = "flr"
) -> list[Comparison]:
    """Pairs labelled by the higher FLR score, with the score gap as margin."""
    prompts = [p for p, _, _ in triples]
    first = follow_up_likelihood_reward(policy, prompts, [a for _, a, _ in triples])
    second = follow_up_likelihood_reward(policy, prompts, [b for _, _, b in triples])
    out = []
    for (prompt, a, b), sa, sb in zip(triples, first, second):
        chosen, rejected = (a, b) if sa >= sb else (b, a)
        out.append(
            Comparison(prompt, chosen, rejected, margin=abs(sa - sb), annotator=annotator_id)
        )
    return out
