"""Each DPO speed technique on its own, A/B in one process: forward + backward of the policy's
summed response log-probs for the same batches, variants interleaved round-robin.

    python benchmarks/techniques.py [--size 5m] [--shape long] [--pairs 64] [--rounds 3]

Variants, each adding one technique to the one before:
  per-step tokenising   encode the batch's text in every step; LM head at every position
  tokenised once        ids from one ``tokenize`` call; LM head at every position
  response-only head    only response positions through the LM head, in checkpointed chunks
  shared prompt         chosen and rejected packed into one row per pair (block mask)
  padding-free          shared prompt, the projections and MLPs on the real tokens only
  length-bucketed       padding-free, batches of similar length (other batches: other numbers)
Prints tokens/s (non-padding prompt+chosen and prompt+rejected tokens) per variant, median;
``--profile`` also prints the torch profiler's hot spots of the shared-prompt variant.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
import transformers
from run import build_fixture

from prefloop.models.packing import pack_pairs
from prefloop.models.policy import Policy, gather_token_logps


def padded_rows():
    """Models run on their padded rows inside the block (the code before padding-free)."""
    return mock.patch("prefloop.models.pretrained.supports_padding_free", lambda model: False)


def full_head_logps(policy: Policy, batch) -> torch.Tensor:
    """The LM head and log-softmax at every position (the code before response-only heads)."""
    logits = policy.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logps = gather_token_logps(logits[:, :-1], batch.input_ids[:, 1:])
    return (logps * batch.response_mask[:, 1:]).sum(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="5m")
    parser.add_argument("--shape", default="long")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        fixture = build_fixture(args.size, args.shape, args.pairs, Path(tmp))
        policy = Policy.from_pretrained(fixture["dir"] / "model")
    data = fixture["data"]
    prompts = [p["prompt"] for p in data]
    chosen = [p["chosen"] for p in data]
    rejected = [p["rejected"] for p in data]
    rows = policy.tokenize(prompts, chosen, rejected)
    b = args.batch_size
    batches = [list(range(i, i + b)) for i in range(0, len(rows), b)]
    by_length = sorted(range(len(rows)), key=lambda i: sum(map(len, rows[i])))
    bucketed = [by_length[i : i + b] for i in range(0, len(rows), b)]
    pad = policy.tokenizer.pad_token_id

    def per_step(idx):
        both = [chosen[i] for i in idx] + [rejected[i] for i in idx]
        return full_head_logps(policy, policy.encode([prompts[i] for i in idx] * 2, both))

    def once(idx):
        return full_head_logps(
            policy, policy.collate([rows[i][:2] for i in idx] + [rows[i][::2] for i in idx])
        )

    def response_head(idx):
        batch = policy.collate([rows[i][:2] for i in idx] + [rows[i][::2] for i in idx])
        with padded_rows():
            return policy.token_logps(batch).sum(-1)

    def shared(idx):
        with padded_rows():
            return padding_free(idx)

    def padding_free(idx):
        return torch.cat(policy.pair_logps(pack_pairs([rows[i] for i in idx], pad)))

    variants = {
        "per-step tokenising": (per_step, batches),
        "tokenised once": (once, batches),
        "response-only head": (response_head, batches),
        "shared prompt": (shared, batches),
        "padding-free": (padding_free, batches),
        "length-bucketed": (padding_free, bucketed),
    }
    tokens = sum(fixture["tokens"])
    speeds: dict[str, list[float]] = {name: [] for name in variants}
    reference = None
    for _ in range(args.rounds):
        for name, (fn, plan) in variants.items():
            started = time.perf_counter()
            sums = []
            for idx in plan:
                out = fn(idx)
                out.sum().backward()
                sums.append(out.detach())
            speeds[name].append(tokens / (time.perf_counter() - started))
            policy.model.zero_grad(set_to_none=True)
            if plan is batches:  # same batches: the same numbers, up to float rounding
                value = torch.cat(sums)
                reference = value if reference is None else reference
                assert torch.allclose(value, reference, atol=1e-3), name
    base = statistics.median(speeds["per-step tokenising"])
    print(
        f"{args.size} {args.shape}, {fixture['params'] / 1e6:.1f} M parameters, "
        f"{args.pairs} pairs, batch {b}, {args.rounds} rounds",
        file=sys.stderr,
    )
    print("| variant | tokens/s (median) | vs per-step tokenising |\n|---|---|---|")
    for name, found in speeds.items():
        speed = statistics.median(found)
        print(f"| {name} | {speed:.0f} | {speed / base:.2f}× |")
    if args.profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for idx in batches:
                padding_free(idx).sum().backward()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
