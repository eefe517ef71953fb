"""DPO time and peak memory at 1×, 4× and 16× the data: time should grow linearly, memory not.

    python benchmarks/scaling.py [--size 5m] [--shape short] [--pairs 64] [--factors 1,4,16]

Each run is a fresh process (its own peak resident memory) training one epoch with batch 16.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from run import build_fixture, make_job, run_side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="5m")
    parser.add_argument("--shape", default="short")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--factors", default="1,4,16")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for factor in map(int, args.factors.split(",")):
            fixture = build_fixture(
                args.size, args.shape, args.pairs * factor, Path(tmp) / str(factor)
            )
            job = make_job("dpo", fixture, args, args.batch_size)
            found = run_side(sys.executable, "prefloop", job, Path(tmp))
            rows.append({"factor": factor, "pairs": args.pairs * factor, **found})
            print(json.dumps(rows[-1]), file=sys.stderr)
    base = rows[0]
    print(f"{args.size} {args.shape}, batch {args.batch_size}, one epoch\n")
    print(
        "| data | pairs | training s (all steps, reference pass, saving) | time / 1× "
        "| steady tokens/s | peak RSS MiB |\n|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['factor']}× | {r['pairs']} | {r['wall_seconds']:.1f} | "
            f"{r['wall_seconds'] / base['wall_seconds']:.2f} | {r['tokens_per_second']:.0f} | "
            f"{r['peak_rss_mib']:.0f} |"
        )


if __name__ == "__main__":
    main()
