"""Tiny offline models: a trained tokenizer and a small Llama-style causal LM.

Both are saved with ``save_pretrained`` so that they load back through exactly the path any
Hugging Face model directory takes (``AutoTokenizer`` / ``AutoModelForCausalLM``). Nothing is
downloaded: tests, the demo and the lab run anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
}


@dataclass(frozen=True)
class TinyModelSpec:
    """Size of a tiny Llama: defaults give ~0.1 M parameters, trainable in seconds on a CPU."""

    hidden_size: int = 64
    intermediate_size: int = 192
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    max_position_embeddings: int = 128


def train_word_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over ``texts``; adds ``<s>`` in front of each encoding."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    specials = [SPECIAL_TOKENS[k] for k in ("pad_token", "bos_token", "eos_token", "unk_token")]
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=specials))
    bos = SPECIAL_TOKENS["bos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)


def create_tiny_model(
    tokenizer: PreTrainedTokenizerFast, spec: TinyModelSpec = TinyModelSpec(), seed: int = 0
) -> LlamaForCausalLM:
    """A freshly initialised small Llama whose vocabulary matches ``tokenizer``."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        max_position_embeddings=spec.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def build_tiny_model(
    texts: Iterable[str], out_dir: str | Path, spec: TinyModelSpec = TinyModelSpec(), seed: int = 0
) -> Path:
    """Train a tokenizer on ``texts``, create a tiny model, save both to ``out_dir``."""
    out_dir = Path(out_dir)
    tokenizer = train_word_tokenizer(texts)
    model = create_tiny_model(tokenizer, spec, seed)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
