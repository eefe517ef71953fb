"""What every prefloop model shares: a Hugging Face model, its tokenizer, one tokenization."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import AutoTokenizer, PreTrainedModel

from prefloop.data.records import Prompt, prompt_text
from prefloop.models.packing import PairBatch
from prefloop.models.padding_free import (
    right_padded_segments,
    supports_padding_free,
    unpadded_hidden_states,
)


class ModelPathError(ValueError):
    """A path that is not a local model directory; the message says what is missing."""


WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def check_model_dir(path: str | Path) -> Path:
    """``path`` as a local Hugging Face model (or adapter) directory, or a clear error.

    Nothing is fetched from a hub: a name that is not a local directory is refused rather than
    taken for a repository id.
    """
    path = Path(path)
    if not path.exists():
        raise ModelPathError(f"{path}: no such model directory (a local Hugging Face model "
                             "directory is expected; nothing is downloaded)")  # fmt: skip
    if not path.is_dir():
        raise ModelPathError(f"{path}: a file, not a model directory")
    missing = []
    if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
        missing.append("config.json")
    if not any(next(path.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        missing.append("weights (*.safetensors or pytorch_model.bin)")
    if not any((path / name).exists() for name in TOKENIZER_FILES):
        missing.append("a tokenizer (tokenizer.json or tokenizer_config.json)")
    if missing:
        raise ModelPathError(f"{path}: not a model directory: missing {', '.join(missing)}")
    return path


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) inside the block; the model's previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@dataclass
class TokenizedBatch:
    """Right-padded prompt+response ids; ``response_mask`` marks the response tokens (with EOS)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor

    def to(self, device: torch.device | str) -> TokenizedBatch:
        tensors = (self.input_ids, self.attention_mask, self.response_mask)
        return TokenizedBatch(*(t.to(device) for t in tensors))

    @property
    def response_lengths(self) -> torch.Tensor:
        return self.response_mask.sum(-1).float()


class PretrainedModel:
    """A model directory's model and tokenizer, tokenizing prompt/response pairs one way.

    Prompts are rendered with the tokenizer's chat template when they are conversations and the
    tokenizer has one; prompt and response are tokenized separately and concatenated, so a
    response's tokens never depend on how they would merge with the prompt's last word, and
    policies and reward models see identical token streams.
    """

    auto_class: ClassVar[type]

    def __init__(self, model: PreTrainedModel, tokenizer, max_length: int | None = None):
        self.model = model
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        positions = getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_length = max_length or positions

    @classmethod
    def load(cls, path: str | Path, dtype: torch.dtype, device: str | None, **model_kwargs):
        path = check_model_dir(path)
        model = cls.auto_class.from_pretrained(path, dtype=dtype, **model_kwargs)
        model.to(device or default_device())
        return cls(model, AutoTokenizer.from_pretrained(path))

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    @property
    def config(self):
        """The model's configuration, also while a distributed wrapper holds the model."""
        return getattr(self.model, "module", self.model).config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def final_hidden_states(self, **inputs: Any) -> torch.Tensor:
        """The last layer's (normed) hidden states [B, T, H], through the model's own forward
        (so a data-parallel wrapper sees the call)."""
        return self.model(**inputs, output_hidden_states=True).hidden_states[-1]

    def padded_hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: Any
    ) -> torch.Tensor:
        """:meth:`final_hidden_states` of a right-padded batch; on the real tokens only (see
        :mod:`prefloop.models.padding_free`) where the model attends through SDPA."""
        if supports_padding_free(self.model) and not attention_mask.bool().all():
            segments, positions = right_padded_segments(attention_mask)
            return unpadded_hidden_states(self.model, input_ids, positions, segments, **inputs)
        return self.final_hidden_states(input_ids=input_ids, attention_mask=attention_mask,
                                        **inputs)  # fmt: skip

    def packed_hidden_states(self, batch: PairBatch, **inputs: Any) -> torch.Tensor:
        """:meth:`final_hidden_states` of packed pairs [B, T, H]; on the real tokens only
        where the model attends through SDPA."""
        if supports_padding_free(self.model):
            return unpadded_hidden_states(self.model, batch.input_ids, batch.position_ids,
                                          batch.segments, **inputs)  # fmt: skip
        return self.final_hidden_states(**self.packed_inputs(batch), **inputs)

    def packed_inputs(self, batch: PairBatch) -> dict[str, torch.Tensor]:
        """Model inputs of packed pairs: ids, positions and the block mask (boolean for SDPA
        attention, additive in the weights' dtype for other implementations)."""
        additive = None
        if self.config._attn_implementation != "sdpa":
            additive = next(self.model.parameters()).dtype
        return {"input_ids": batch.input_ids, "position_ids": batch.position_ids,
                "attention_mask": batch.attention_mask(additive)}  # fmt: skip

    def render_prompt(self, prompt: Prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                prompt, tokenize=False, add_generation_prompt=True
            )
        return prompt_text(prompt)

    def prompt_ids(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        texts = [self.render_prompt(p) for p in prompts]
        return self.tokenizer(texts, add_special_tokens=True)["input_ids"]

    def tokenize(
        self, prompts: Sequence[Prompt], *responses: Sequence[str]
    ) -> list[tuple[list[int], ...]]:
        """Token ids (prompt, response, ...) per example, each response ending in EOS.

        A prompt of ``max_length`` tokens or more keeps its last half; each response is cut so
        that prompt + response fits ``max_length``. Tokenise a dataset once with this and build
        each step's batch with :meth:`collate` or :func:`pack_pairs`.
        """
        for texts in responses:
            if len(prompts) != len(texts):
                raise ValueError(f"{len(prompts)} prompts but {len(texts)} responses")
        eos = self.tokenizer.eos_token_id
        columns = [self.tokenizer(list(t), add_special_tokens=False)["input_ids"]
                   for t in responses]  # fmt: skip
        rows = []
        for prompt, *answers in zip(self.prompt_ids(prompts), *columns):
            if len(prompt) >= self.max_length:
                prompt = prompt[-(self.max_length // 2) :]
            room = self.max_length - len(prompt)
            rows.append((prompt, *((answer + [eos])[:room] for answer in answers)))
        return rows

    def collate(self, rows: Sequence[tuple[list[int], list[int]]]) -> TokenizedBatch:
        """(prompt, response) id pairs from :meth:`tokenize` as one right-padded batch."""
        width = max(len(p) + len(r) for p, r in rows)
        input_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        response_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (prompt, response) in enumerate(rows):
            n = len(prompt) + len(response)
            input_ids[i, :n] = torch.tensor(prompt + response)
            attention[i, :n] = 1
            response_mask[i, len(prompt) : n] = 1
        return TokenizedBatch(input_ids, attention, response_mask)

    def encode(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> TokenizedBatch:
        """Prompt+response pairs as one right-padded batch, truncated to ``max_length``."""
        return self.collate(self.tokenize(prompts, responses))
