"""Batches without padding: the model runs on a batch's real tokens only.

A batch [B, T] pads every row (a packed pair, or a prompt and response) to the longest one,
and the projections and MLPs,
which act token by token, would spend that share of their FLOPs on padding. Here the batch's
real tokens go through the model as one row [1, N]. Attention, the one step that mixes
positions, scatters its queries, keys and values back into the [B, T] rows, runs SDPA there
with the rows' (block) mask, and gathers its output again: the same numbers as the padded rows.

It is routed through transformers' attention interface: its ``sdpa`` entry is wrapped so that
a call carrying an ``unpadded`` argument (which only this module passes) takes this path and
every other call is transformers' own SDPA. Models whose attention does not go through that
interface, or that run another attention implementation, keep the padded rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface

from prefloop.models.packing import PADDING, PROMPT, block_attention_mask

_transformers_sdpa = AttentionInterface._global_mapping["sdpa"]


@dataclass
class Unpadding:
    """Where the real tokens sit in the padded [rows, width] batch (flat positions)."""

    index: torch.Tensor
    rows: int
    width: int
    calls: int = 0

    def pad(self, states: torch.Tensor) -> torch.Tensor:
        """[1, heads, N, d] → [rows, heads, width, d], zeros at padding."""
        flat = states[0].transpose(0, 1)
        padded = flat.new_zeros(self.rows * self.width, *flat.shape[1:])
        padded[self.index] = flat  # an index_put saves only the index for backward
        return padded.view(self.rows, self.width, *flat.shape[1:]).transpose(1, 2)


def _sdpa(module, query, key, value, attention_mask, *args, unpadded: Unpadding | None = None,
          **kwargs) -> tuple[torch.Tensor, Any]:  # fmt: skip
    if unpadded is None:
        return _transformers_sdpa(module, query, key, value, attention_mask, *args, **kwargs)
    unpadded.calls += 1
    query, key, value = (unpadded.pad(states) for states in (query, key, value))
    out, weights = _transformers_sdpa(module, query, key, value, attention_mask, *args, **kwargs)
    out = out.reshape(unpadded.rows * unpadded.width, *out.shape[2:])  # [rows·width, heads, d]
    return out.index_select(0, unpadded.index).unsqueeze(0), weights


AttentionInterface.register("sdpa", _sdpa)


def supports_padding_free(model: torch.nn.Module) -> bool:
    """Whether ``model`` (or the model a wrapper holds) attends through transformers' SDPA."""
    base = getattr(model, "module", model)
    return bool(getattr(base, "_supports_attention_backend", False)) and (
        base.config._attn_implementation == "sdpa"
    )


def unpadded_hidden_states(
    model: torch.nn.Module, input_ids: torch.Tensor, position_ids: torch.Tensor,
    segments: torch.Tensor, **kwargs: Any,
) -> torch.Tensor:  # fmt: skip
    """The last layer's hidden states [B, T, H] of a padded batch whose positions are marked
    by ``segments`` (see :mod:`prefloop.models.packing`), computed on the real tokens only
    (zeros at padding), through the model's own forward."""
    real = (segments != PADDING).flatten().nonzero().squeeze(-1)
    rows, width = input_ids.shape
    unpadded = Unpadding(real, rows, width)
    out = model(input_ids=input_ids.flatten()[real].unsqueeze(0),
                position_ids=position_ids.flatten()[real].unsqueeze(0),
                attention_mask=block_attention_mask(segments), unpadded=unpadded,
                output_hidden_states=True, **kwargs)  # fmt: skip
    if unpadded.calls == 0:
        raise RuntimeError(f"{type(model).__name__} did not attend through transformers' SDPA "
                           "interface; padding-free batches need it")  # fmt: skip
    hidden = out.hidden_states[-1][0]
    padded = hidden.new_zeros(rows * width, hidden.shape[-1])
    padded[real] = hidden
    return padded.view(rows, width, -1)


def right_padded_segments(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Segment ids (every real token one PROMPT segment: plain causal attention) and position
    ids of a right-padded batch."""
    segments = torch.where(attention_mask.bool(), PROMPT, PADDING)
    return segments, (attention_mask.cumsum(-1) - 1).clamp(min=0)
