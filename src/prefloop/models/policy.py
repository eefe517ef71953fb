"""``Policy``: any Hugging Face causal LM + tokenizer, seen as a distribution over responses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from prefloop.data.records import Prompt, prompt_text


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class TokenizedBatch:
    """Right-padded prompt+response ids; ``response_mask`` marks the response tokens (with EOS)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor

    def to(self, device: torch.device | str) -> TokenizedBatch:
        return TokenizedBatch(
            *(t.to(device) for t in (self.input_ids, self.attention_mask, self.response_mask))
        )

    @property
    def response_lengths(self) -> torch.Tensor:
        return self.response_mask.sum(-1).float()


def gather_token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label) per position without materialising the full log-softmax over the vocabulary."""
    picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return picked.float() - torch.logsumexp(logits.float(), dim=-1)


class Policy:
    """Batched, masked response log-probabilities and KV-cached sampling for a causal LM.

    Prompts are rendered with the tokenizer's chat template when they are conversations and the
    tokenizer has one; prompt and response are tokenized separately and concatenated, so a
    response's tokens never depend on how they would merge with the prompt's last word.
    """

    def __init__(self, model: PreTrainedModel, tokenizer, max_length: int | None = None):
        self.model = model
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        positions = getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_length = max_length or positions

    @classmethod
    def from_pretrained(
        cls, path: str | Path, dtype: torch.dtype = torch.float32, device: str | None = None
    ) -> Policy:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        model.to(device or default_device())
        return cls(model, AutoTokenizer.from_pretrained(path))

    def save_pretrained(self, path: str | Path) -> None:
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ---- tokenization --------------------------------------------------------------------
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

    def encode(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> TokenizedBatch:
        """Prompt+response pairs as one right-padded batch, truncated to ``max_length``."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        eos = self.tokenizer.eos_token_id
        response_ids = self.tokenizer(list(responses), add_special_tokens=False)["input_ids"]
        rows = []
        for prompt, response in zip(self.prompt_ids(prompts), response_ids):
            prompt = prompt[-(self.max_length // 2) :] if len(prompt) >= self.max_length else prompt
            response = (response + [eos])[: self.max_length - len(prompt)]
            rows.append((prompt, response))
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

    # ---- log-probabilities ---------------------------------------------------------------
    def token_logps(self, batch: TokenizedBatch) -> torch.Tensor:
        """log π(token | prefix) at each position, zero outside the response; shape [B, T-1]."""
        batch = batch.to(self.device)
        logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        labels = batch.input_ids[:, 1:]
        logps = gather_token_logps(logits[:, :-1], labels)
        return logps * batch.response_mask[:, 1:]

    @torch.no_grad()
    def sequence_logps(
        self, prompts: Sequence[Prompt], responses: Sequence[str], batch_size: int = 64
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed response log-probs and response token counts, on the CPU, without gradients."""
        was_training = self.model.training
        self.model.eval()
        sums, lengths = [], []
        for start in range(0, len(prompts), batch_size):
            batch = self.encode(
                prompts[start : start + batch_size], responses[start : start + batch_size]
            )
            sums.append(self.token_logps(batch).sum(-1).cpu())
            lengths.append(batch.response_lengths)
        self.model.train(was_training)
        return torch.cat(sums), torch.cat(lengths)

    # ---- sampling ------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[Prompt],
        num_samples: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 64,
        seed: int = 0,
        batch_size: int = 64,
    ) -> list[list[str]]:
        """``num_samples`` responses per prompt (KV-cached decoding); temperature 0 is greedy."""
        was_training = self.model.training
        self.model.eval()
        pad = self.tokenizer.pad_token_id
        outputs: list[list[str]] = []
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            for start in range(0, len(prompts), batch_size):
                ids = self.prompt_ids(prompts[start : start + batch_size])
                width = max(len(i) for i in ids)
                input_ids = torch.tensor(
                    [[pad] * (width - len(i)) + i for i in ids], device=self.device
                )
                attention = (
                    torch.arange(width) >= torch.tensor([[width - len(i)] for i in ids])
                ).long()
                sampling = {
                    "do_sample": True,
                    "temperature": temperature,
                    "top_p": top_p,
                    "top_k": 0,
                }
                generated = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=attention.to(self.device),
                    max_new_tokens=max_new_tokens,
                    num_return_sequences=num_samples,
                    pad_token_id=pad,
                    eos_token_id=self.tokenizer.eos_token_id,
                    **(sampling if temperature > 0 else {"do_sample": False}),
                )
                texts = self.tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
                texts = [t.strip() for t in texts]
                outputs += [texts[i : i + num_samples] for i in range(0, len(texts), num_samples)]
        self.model.train(was_training)
        return outputs
