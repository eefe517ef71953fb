"""Log-probs of sampled completions from their token ids: what was sampled is what is trained."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prefloop.models.policy import gather_token_logps


def join_ids(
    prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt+completion ids right-padded into one batch, and its attention mask."""
    rows = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids)]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
    return input_ids, attention


def left_padded(
    prompt_ids: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompts left-padded into one batch (so every row's last position is its last token):
    ids, attention mask and position ids counting from each row's first real token."""
    width = max(len(r) for r in prompt_ids)
    input_ids = torch.tensor([[pad_id] * (width - len(r)) + list(r) for r in prompt_ids],
                             device=device)  # fmt: skip
    attention = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in prompt_ids],
                             device=device)  # fmt: skip
    return input_ids, attention, (attention.cumsum(-1) - 1).clamp(min=0)


def completion_logps(
    model: torch.nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    pad_id: int,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log π(y_t | x, y_<t) at ``temperature``, completion-aligned [N, L], and mask.

    Prompt and completion are concatenated as ids (no re-tokenisation); the LM head runs only
    from the first completion position on.
    """
    device = next(model.parameters()).device
    input_ids, attention = (t.to(device) for t in join_ids(prompt_ids, completion_ids, pad_id))
    width = input_ids.shape[1]
    prompt_lengths = [len(p) for p in prompt_ids]
    first = min(prompt_lengths) - 1  # earliest position that predicts a completion token
    logits = model(input_ids=input_ids, attention_mask=attention,
                   logits_to_keep=width - first).logits  # fmt: skip
    # logits[:, j] predicts the token at position first + j + 1
    length = max((len(c) for c in completion_ids), default=0)
    offsets = torch.tensor(prompt_lengths, device=device)[:, None] - 1 - first
    index = (offsets + torch.arange(length, device=device)).clamp(max=logits.shape[1] - 2)
    picked_logits = logits.gather(1, index[..., None].expand(-1, -1, logits.shape[-1]))
    labels = input_ids.gather(1, (index + first + 1).clamp(max=width - 1))
    mask = torch.zeros(len(completion_ids), length, device=device)
    for i, c in enumerate(completion_ids):
        mask[i, : len(c)] = 1
    logps = gather_token_logps(picked_logits / temperature, labels)
    return logps * mask, mask
