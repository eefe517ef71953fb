"""The policy as its own judge (OSP, Zhai et al. 2024): a language model asked which of two
responses is better, read off its next-token probabilities of the two verdicts.

The question is plain text (:func:`judge_prompt`); the policy learns to answer it like any
other prompt (supervised on labelled comparisons, :func:`judge_examples`), and then judges its
own samples for free while it trains — the judge moves with the policy. Both orders are asked
and averaged, so a preference for the first position cancels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prefloop.data.records import Comparison, Prompt
from prefloop.models.policy import Policy
from prefloop.models.pretrained import evaluating
from prefloop.online.logps import left_padded

VERDICTS = ("first", "second")


def judge_prompt(prompt: Prompt, first: str, second: str) -> str:
    """The comparison question for ``prompt`` (a conversation is rendered as its last turn)."""
    text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    return f"{text} | first : {first} | second : {second} | better :"


def judge_vocabulary() -> str:
    """Every word of the question and the verdicts: add it to a word tokenizer's texts."""
    return f"{judge_prompt('', '', '')} {' '.join(VERDICTS)}"


def judge_examples(comparisons: Sequence[Comparison]) -> list[tuple[str, str]]:
    """(question, verdict) pairs teaching the judgement of each comparison, in both orders."""
    out = []
    for c in comparisons:
        out.append((judge_prompt(c.prompt, c.chosen, c.rejected), VERDICTS[0]))
        out.append((judge_prompt(c.prompt, c.rejected, c.chosen), VERDICTS[1]))
    return out


class PolicyJudge:
    """A pairwise judge that is the (live) policy itself; it spends no annotator labels.

    ``judgments`` counts the comparisons it made; ``labels_used`` stays 0.
    """

    labels_used = 0

    def __init__(self, policy: Policy, batch_size: int = 64) -> None:
        self.policy, self.batch_size = policy, batch_size
        self.judgments = 0
        ids = [policy.tokenizer(" " + v, add_special_tokens=False).input_ids for v in VERDICTS]
        if any(len(i) != 1 for i in ids) or ids[0] == ids[1]:
            raise ValueError(f"the tokenizer must encode the verdicts {VERDICTS} as one token "
                             f"each (got {ids}); the policy cannot judge")  # fmt: skip
        self.verdict_ids = [i[0] for i in ids]

    @torch.no_grad()
    def first_probability(
        self, prompts: Sequence[Prompt], first: Sequence[str], second: Sequence[str]
    ) -> torch.Tensor:
        """P(verdict "first") / (P("first") + P("second")) for each question, one order."""
        questions = [judge_prompt(p, a, b) for p, a, b in zip(prompts, first, second)]
        model = getattr(self.policy.model, "module", self.policy.model)
        pad, device = self.policy.tokenizer.pad_token_id, self.policy.device
        out = []
        with evaluating(model):
            for start in range(0, len(questions), self.batch_size):
                rows = self.policy.prompt_ids(questions[start : start + self.batch_size])
                ids, mask, positions = left_padded(rows, pad, device)  # the last one answers
                logits = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                               logits_to_keep=1).logits[:, -1]  # fmt: skip
                verdicts = logits[:, self.verdict_ids].float()
                out.append(torch.sigmoid(verdicts[:, 0] - verdicts[:, 1]).cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def prefer(self, prompts, first, second, seed=0):
        forward = self.first_probability(prompts, first, second)
        backward = self.first_probability(prompts, second, first)
        self.judgments += 2 * len(prompts)
        return ((forward + 1 - backward) / 2).tolist()
