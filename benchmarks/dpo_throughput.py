"""DPO training throughput and peak memory for the demo's model size.

    python benchmarks/dpo_throughput.py [--pairs 1600] [--batch-size 32] [--threads 2]

Prints one JSON line: tokens/s (non-padding prompt+response tokens of chosen and rejected,
forward + backward), pairs/s, and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch
import transformers

from prefloop.models.factory import TinyModelSpec, build_tiny_model
from prefloop.models.policy import Policy
from prefloop.train.engine import TrainConfig
from prefloop.train.preference import train_preference
from prefloop.worlds import BradleyTerryAnnotator, ReviewWorld


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()

    world = ReviewWorld()
    corpus = world.corpus(2 * args.pairs, seed=0)
    annotator = BradleyTerryAnnotator(world, seed=0)
    pairs = annotator.label_pairs([(p, a, b) for (p, a), (_, b) in zip(corpus[::2], corpus[1::2])])
    with tempfile.TemporaryDirectory() as tmp:
        texts = [r for _, r in corpus] + world.prompt_pool("all")
        policy = Policy.from_pretrained(build_tiny_model(texts, Path(tmp) / "m", TinyModelSpec()))
        batch = policy.encode(
            [c.prompt for c in pairs] * 2, [c.chosen for c in pairs] + [c.rejected for c in pairs]
        )
        tokens = int(batch.attention_mask.sum())
        config = TrainConfig(learning_rate=1e-3, batch_size=args.batch_size, epochs=1)
        started = time.perf_counter()
        train_preference(policy, pairs, config, Path(tmp) / "run", show_progress=False)
        seconds = time.perf_counter() - started
    print(json.dumps({
        "pairs": len(pairs),
        "seconds_including_reference_pass": round(seconds, 2),
        "tokens_per_second": round(tokens / seconds),
        "pairs_per_second": round(len(pairs) / seconds, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": args.threads,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
