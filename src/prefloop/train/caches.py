"""Fingerprints of what a result depends on, and log-prob caches keyed by them.

A cached tensor is reused only when the fingerprint stored with it matches the live one: the
model's weights, its tokenizer and maximum length, and the exact prompts and responses. A
stale cache (another reference, other data of the same size) is recomputed, never read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from prefloop.data.records import Prompt
from prefloop.models.policy import Policy
from prefloop.train.checkpoints import CACHE_DIR

FINGERPRINT_KEY = "prefloop_fingerprint"


def _jsonable(item: Any) -> Any:
    return asdict(item) if is_dataclass(item) and not isinstance(item, type) else item


def data_fingerprint(items: Sequence[Any]) -> str:
    """SHA-256 of a dataset's content (records, examples or plain values), in order."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(json.dumps(_jsonable(item), sort_keys=True, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers (names, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab())
    text += str(getattr(tokenizer, "chat_template", None))
    return hashlib.sha256(text.encode()).hexdigest()


def cached_sequence_logps(
    model: Policy,
    prompts: Sequence[Prompt],
    responses: dict[str, Sequence[str]],
    out_dir: str | Path | None,
    name: str,
    write: bool = True,
) -> dict[str, torch.Tensor]:
    """Summed log-probs ``{key}`` and token counts ``{key}_lengths`` of each response list.

    Cached in ``out_dir/cache/{name}.safetensors`` under a fingerprint of the model, tokenizer,
    maximum length, prompts and responses; ``write=False`` (processes other than the main one)
    reads a matching cache but never writes.
    """
    fingerprint = hashlib.sha256(
        json.dumps(
            [
                model_fingerprint(model.model),
                tokenizer_fingerprint(model.tokenizer),
                model.max_length,
                data_fingerprint(prompts),
                {k: data_fingerprint(v) for k, v in sorted(responses.items())},
            ]
        ).encode()
    ).hexdigest()
    path = Path(out_dir, CACHE_DIR, f"{name}.safetensors") if out_dir is not None else None
    if path is not None and path.exists():
        found = _read_cache(path, fingerprint)
        if found is not None:
            return found
    logps: dict[str, torch.Tensor] = {}
    for key, texts in responses.items():
        logps[key], logps[f"{key}_lengths"] = model.sequence_logps(list(prompts), list(texts))
    if path is not None and write:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        save_file(logps, str(partial), metadata={FINGERPRINT_KEY: fingerprint})
        partial.replace(path)  # a cache file exists only once complete
    return logps


def _read_cache(path: Path, fingerprint: str) -> dict[str, torch.Tensor] | None:
    """The cached tensors if ``path`` was written for ``fingerprint``, else None."""
    try:
        with safe_open(path, "pt") as cached:
            if (cached.metadata() or {}).get(FINGERPRINT_KEY) != fingerprint:
                return None
            return {key: cached.get_tensor(key) for key in cached.keys()}  # noqa: SIM118
    except SafetensorError:
        return None  # unreadable: recompute
