"""Chosen and rejected sharing one prompt: a pair as one row, [prompt, chosen, rejected].

The prompt is computed once per pair instead of twice. Position ids restart the rejected
response right after the prompt, and a block attention mask lets it see the prompt and
itself but not the chosen response, so each response sees exactly the context it would in a
row of its own: the log-probs are the same as the unpacked ones, up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

#: Segment ids of a packed row's positions.
PROMPT, CHOSEN, REJECTED, PADDING = 0, 1, 2, 3


@dataclass
class ScoredTokens:
    """Which tokens to score: token ``labels[i]`` is predicted by the hidden state at flat
    position ``sources[i]`` of the [B, T] batch and belongs to sequence ``sequences[i]``."""

    sources: torch.Tensor
    labels: torch.Tensor
    sequences: torch.Tensor

    def to(self, device: torch.device | str) -> ScoredTokens:
        return ScoredTokens(*(t.to(device) for t in (self.sources, self.labels, self.sequences)))


def block_attention_mask(
    segments: torch.Tensor, additive: torch.dtype | None = None
) -> torch.Tensor:
    """[B, 1, T, T] from segment ids [B, T]: causal, the prompt visible to every later
    position, a response visible only to itself; a padding position sees only itself (a query
    that sees no key would give NaNs). Boolean (True: attend), or with ``additive`` 0 / the
    dtype's minimum. Rows of PROMPT and PADDING only give the plain causal padded mask."""
    width = segments.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=segments.device).tril()
    query, key = segments.unsqueeze(2), segments.unsqueeze(1)
    allowed = causal & ((key == PROMPT) | (key == query)) & (query != PADDING)
    allowed |= torch.eye(width, dtype=torch.bool, device=segments.device) & (query == PADDING)
    if additive is None:
        return allowed.unsqueeze(1)
    mask = torch.zeros(allowed.shape, dtype=additive, device=segments.device)
    return mask.masked_fill(~allowed, torch.finfo(additive).min).unsqueeze(1)


@dataclass
class PairBatch:
    """Packed pairs: one row each, with the block mask and positions that keep them apart.

    Scored sequences 0..B-1 are the chosen responses, B..2B-1 the rejected ones.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    segments: torch.Tensor
    scored: ScoredTokens
    chosen_lengths: torch.Tensor
    rejected_lengths: torch.Tensor
    ends: torch.Tensor  # [B, 2]: positions of the chosen and the rejected last tokens

    def attention_mask(self, additive: torch.dtype | None = None) -> torch.Tensor:
        """[B, 1, T, T] block mask of the pairs (see :func:`block_attention_mask`)."""
        return block_attention_mask(self.segments, additive)

    def to(self, device: torch.device | str) -> PairBatch:
        return PairBatch(
            self.input_ids.to(device), self.position_ids.to(device), self.segments.to(device),
            self.scored.to(device), self.chosen_lengths.to(device),
            self.rejected_lengths.to(device), self.ends.to(device),
        )  # fmt: skip


def pack_pairs(rows: Sequence[tuple[list[int], list[int], list[int]]], pad_id: int) -> PairBatch:
    """(prompt, chosen, rejected) token ids, e.g. from ``tokenize``, as one row per pair."""
    width = max(len(p) + len(c) + len(r) for p, c, r in rows)
    count = len(rows)
    input_ids = torch.full((count, width), pad_id, dtype=torch.long)
    positions = torch.zeros((count, width), dtype=torch.long)
    segments = torch.full((count, width), PADDING, dtype=torch.long)
    sources, labels, sequences = [], [], []
    for i, (prompt, chosen, rejected) in enumerate(rows):
        p, c, r = len(prompt), len(chosen), len(rejected)
        if p == 0:
            raise ValueError("an empty prompt (no BOS token) leaves a response's first token "
                             "nothing to be predicted from")  # fmt: skip
        input_ids[i, : p + c + r] = torch.tensor(prompt + chosen + rejected)
        positions[i, : p + c] = torch.arange(p + c)
        positions[i, p + c : p + c + r] = torch.arange(p, p + r)
        segments[i, :p], segments[i, p : p + c], segments[i, p + c : p + c + r] = (
            PROMPT, CHOSEN, REJECTED)  # fmt: skip
        base = i * width
        # chosen token p+j is predicted at p+j-1; rejected token j at p-1 (j=0), else its own
        chosen_src = torch.arange(base + p - 1, base + p + c - 1)
        rejected_src = torch.arange(base + p + c - 1, base + p + c + r - 1)
        rejected_src[0] = base + p - 1
        sources += [chosen_src, rejected_src]
        labels += [input_ids[i, p : p + c + r]]
        sequences += [torch.full((c,), i), torch.full((r,), count + i)]
    scored = ScoredTokens(torch.cat(sources), torch.cat(labels), torch.cat(sequences))
    lengths = torch.tensor([[len(c), len(r)] for _, c, r in rows], dtype=torch.float32)
    ends = torch.tensor([[len(p) + len(c) - 1, len(p) + len(c) + len(r) - 1]
                         for p, c, r in rows])  # fmt: skip
    return PairBatch(input_ids, positions, segments, scored, lengths[:, 0], lengths[:, 1], ends)
