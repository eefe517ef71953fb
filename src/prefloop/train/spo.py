"""SPO auxiliary (Li et al. 2024): predict how much key content a response variant has lost.

A linear head on the policy's last hidden state (at the response's final token) classifies
variants of the chosen and rejected responses by the number of key words removed; its
cross-entropy, :func:`prefloop.objectives.preference_degree_loss`, is added to any pairwise
objective with weight ``lambda``. The training task declares the head as a module it trains
(checkpointed with the policy); it is not part of the saved policy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prefloop.data.records import Prompt
from prefloop.models.policy import Policy
from prefloop.objectives import degree_variants, preference_degree_loss

#: Function words that never count as key content.
STOPWORDS = frozenset(
    (
        "the",
        "a",
        "an",
        "is",
        "are",
        "was",
        "were",
        "it",
        "i",
        "my",
        "me",
        "of",
        "and",
        "or",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "this",
        "that",
        "has",
        "have",
        "had",
        "too",
        "one",
    )
)


def key_word_indices(words: Sequence[str]) -> list[int]:
    """Positions of content words: alphabetic, at least three letters, not a function word."""
    return [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 3 and w not in STOPWORDS]


class PreferenceDegreeAuxiliary:
    """The SPO head (``head``, a module the task trains beside the policy) and its loss."""

    def __init__(self, policy: Policy, num_classes: int = 3, seed: int = 0) -> None:
        if num_classes < 2:
            raise ValueError(f"spo_classes must be >= 2, got {num_classes}")
        self.policy = policy
        self.num_classes = num_classes
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the head's initialisation depends on the seed only
            head = torch.nn.Linear(policy.model.config.hidden_size, num_classes)
        self.head = head.to(policy.device)

    def variants(self, responses: Sequence[str]) -> tuple[list[str], torch.Tensor]:
        """One degraded variant per response, its class drawn from the torch RNG (resumable)."""
        texts, labels = [], []
        for response in responses:
            words = response.split()
            keys = key_word_indices(words)
            top = min(self.num_classes - 1, len(keys))
            k = int(torch.randint(top + 1, ()).item())
            order_seed = int(torch.randint(2**31 - 1, ()).item())
            variant, label = degree_variants(words, keys, max_removed=top, seed=order_seed)[k]
            texts.append(" ".join(variant))
            labels.append(label)
        return texts, torch.tensor(labels)

    def loss(
        self, prompts: Sequence[Prompt], responses: Sequence[str]
    ) -> tuple[torch.Tensor, dict]:
        """Mean cross-entropy of the degree classifier over one variant of each response."""
        texts, labels = self.variants(responses)
        batch = self.policy.encode(prompts, texts).to(self.policy.device)
        output = self.policy.model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            output_hidden_states=True,
        )
        last = batch.attention_mask.sum(-1) - 1
        hidden = output.hidden_states[-1][torch.arange(len(texts)), last]
        logits = self.head(hidden)
        labels = labels.to(logits.device)
        loss = preference_degree_loss(logits, labels).mean()
        accuracy = (logits.argmax(-1) == labels).float().mean().item()
        return loss, {"spo_loss": loss.item(), "spo_accuracy": accuracy}
