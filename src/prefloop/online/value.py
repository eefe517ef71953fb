"""PPO's critic: a causal LM's backbone with a scalar head, one value per completion token."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModel

from prefloop.models.pretrained import check_model_dir
from prefloop.online.logps import join_ids


class ValueNetwork(torch.nn.Module):
    def __init__(self, backbone: torch.nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)  # V ≡ 0 at the start: no initial bias
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        return self.head(hidden.last_hidden_state.float()).squeeze(-1)


class ValueModel:
    """V(x, y_<t) before each completion token t; ``model`` is what the engine trains."""

    def __init__(self, model: ValueNetwork) -> None:
        self.model = model

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> ValueModel:
        """The critic starts from the backbone at ``path`` (the SFT policy or a reward model)."""
        backbone = AutoModel.from_pretrained(check_model_dir(path))
        return cls(ValueNetwork(backbone, backbone.config.hidden_size).to(device))

    def completion_values(
        self, prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
        pad_id: int,
    ) -> torch.Tensor:  # fmt: skip
        """Completion-aligned [N, L] values (with gradients), 0 past each completion."""
        device = next(self.model.parameters()).device
        input_ids, attention = join_ids(prompt_ids, completion_ids, pad_id)
        values = self.model(input_ids.to(device), attention.to(device))
        length = max(len(c) for c in completion_ids)
        out = torch.zeros(len(completion_ids), length, device=device)
        for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
            out[i, : len(c)] = values[i, len(p) - 1 : len(p) - 1 + len(c)]
        return out
