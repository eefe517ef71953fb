"""prefloop against TRL (and plain ``generate``) on identical work, measured side by side.

    python benchmarks/run.py [--vs trl] [--quick] [--workloads dpo,rm,sample,grpo]
                             [--sizes 5m,30m] [--shapes short,long] [--pairs N] [--repeats R]

Builds, for each size and shape, one tiny offline Llama, its word tokenizer and synthetic
preference pairs; both sides load exactly these files. Each side runs in its own process
(TRL in ``.bench/trl-venv``, created with ``--vs trl`` on first use, sharing this
environment's torch and transformers), alternating A/B for ``--repeats`` pairs. Reports per
workload the median tokens/s of each side (every non-padding prompt+chosen and prompt+rejected
token counts, for sampling every generated token), their ratio, each side's peak resident
memory, MFU against this machine's measured fp32 matmul throughput, and both sides' first and
last losses. ``grpo`` (only with ``--vs trl``) SFTs one tiny policy on the verifiable world
(column addition) and runs prefloop's GRPO and TRL's GRPOTrainer from it at equal settings,
reporting completion tokens/s, steps/s and the rewards. Writes ``--out``/results.json and
results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from prefloop.models.factory import TinyModelSpec, create_tiny_model, train_word_tokenizer
from prefloop.train.sources import batch_indices

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TRL_VENV = ROOT / ".bench" / "trl-venv"
SIZES = {  # ≈ 5 M and ≈ 30 M parameters with their vocabularies
    "5m": (6000, TinyModelSpec(256, 688, 4, 4, 512)),
    "30m": (8000, TinyModelSpec(512, 1376, 8, 8, 512)),
}
SHAPES = {"short": (24, 40), "long": (240, 272)}  # prompt length range, in words
RESPONSE = (48, 80)
COUNTERPART = {"dpo": "TRL DPOTrainer (precompute_ref_log_probs)",
               "rm": "TRL RewardTrainer", "sample": "transformers generate",
               "grpo": "TRL GRPOTrainer"}  # fmt: skip


def synthetic_pairs(vocab: int, shape: str, n: int, seed: int = 0) -> list[dict[str, str]]:
    """Random-word prompts; chosen responses use even word ids, rejected odd ones (learnable)."""
    rng = np.random.default_rng(seed)
    low, high = SHAPES[shape]

    def words(count: int, parity: int | None = None) -> str:
        ids = rng.integers(0, vocab // 2, count) * 2 + (parity or 0) if parity is not None else (
            rng.integers(0, vocab, count))  # fmt: skip
        return " ".join(f"w{i}" for i in ids)

    return [{"prompt": words(rng.integers(low, high + 1)),
             "chosen": words(rng.integers(*RESPONSE), 0),
             "rejected": words(rng.integers(*RESPONSE), 1)} for _ in range(n)]  # fmt: skip


def build_fixture(size: str, shape: str, pairs: int, root: Path) -> dict:
    """Model directory, data file and per-pair token counts for one size × shape."""
    vocab, spec = SIZES[size]
    out = root / f"{size}-{shape}"
    data = synthetic_pairs(vocab, shape, pairs)
    tokenizer = train_word_tokenizer([" ".join(f"w{i}" for i in range(vocab))])
    model = create_tiny_model(tokenizer, spec)
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    (out / "pairs.json").write_text(json.dumps(data))
    # BOS + prompt, response + EOS, for chosen and for rejected
    tokens = [2 * (1 + len(p["prompt"].split())) + len(p["chosen"].split())
              + len(p["rejected"].split()) + 2 for p in data]  # fmt: skip
    params = sum(p.numel() for p in model.parameters())  # the tied embedding counts once
    embedding = model.get_input_embeddings().weight.numel()
    return {"dir": out, "tokens": tokens, "params": params, "embedding": embedding,
            "spec": asdict(spec), "vocab": vocab, "data": data}  # fmt: skip


def matmul_gflops(threads: int) -> float:
    """This machine's fp32 matmul throughput (best of several 2048² products)."""
    torch.set_num_threads(threads)
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(8):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def ensure_trl_venv() -> Path:
    """``.bench/trl-venv``: TRL on top of this environment's torch and transformers."""
    python = TRL_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.base_prefix + "/bin/python3", "-m", "venv", str(TRL_VENV)],
                       check=True)  # fmt: skip
        site = next((TRL_VENV / "lib").glob("python*/site-packages"))
        ours = next(p for p in sys.path if p.endswith("site-packages"))
        (site / "base-env.pth").write_text(ours + "\n")  # same torch, same transformers
        subprocess.run([str(python), "-m", "pip", "install", "-q", "trl"], check=True)
    return python


def run_side(python: str, side: str, job: dict, work: Path) -> dict:
    path = work / f"job-{job['workload']}-{side}.json"
    path.write_text(json.dumps(job))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(job["threads"])}
    if side == "trl":
        env.pop("PYTHONPATH")
    done = subprocess.run([python, str(HERE / f"side_{side}.py"), str(path)], env=env,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{side} side of {job['workload']} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_job(workload: str, fixture: dict, args: argparse.Namespace, batch: int) -> dict:
    n = len(fixture["tokens"])
    steps = n // batch
    order = [i for step in range(steps) for i in batch_indices(n, batch, step, args.seed)]
    step_tokens = [sum(fixture["tokens"][i] for i in order[s * batch : (s + 1) * batch])
                   for s in range(steps)]  # fmt: skip
    return {"workload": workload, "model_dir": str(fixture["dir"] / "model"),
            "data": str(fixture["dir"] / "pairs.json"), "batch_size": batch,
            "learning_rate": 5e-4, "warmup_ratio": 0.1, "beta": 0.1, "seed": args.seed,
            "threads": args.threads, "order": order, "step_tokens": step_tokens,
            "max_length": 1024, "samples": 4, "max_new_tokens": 64}  # fmt: skip


def alternate(job: dict, args, pythons: dict, work: Path, counterpart: bool) -> dict:
    """Each side's results over ``args.repeats`` runs, alternating AB, BA, AB, ..."""
    sides = ["prefloop"] + (["trl"] if counterpart else [])
    runs: dict[str, list[dict]] = {s: [] for s in sides}
    for repeat in range(args.repeats):
        for side in sides if repeat % 2 == 0 else sides[::-1]:
            runs[side].append(run_side(pythons[side], side, job, work))
            speed = runs[side][-1]["tokens_per_second"]
            print(f"  {job['workload']} {side}: {speed:.0f} tokens/s", file=sys.stderr)
    return runs


def measure_grpo(args, pythons: dict, work: Path) -> dict:
    """GRPO on the verifiable world from one SFT model: prefloop against TRL's GRPOTrainer."""
    from prefloop.lab.common import prepare_sft_policy
    from prefloop.online.loop import Loop
    from prefloop.train.sources import Shard
    from prefloop.worlds.arithmetic import ArithmeticWorld

    world = ArithmeticWorld()
    prepare_sft_policy(world, ArithmeticWorld.sft_setup(fast=True), work / "arithmetic", args.seed)
    prompts = world.prompts(args.grpo_prompts * args.grpo_steps, args.seed + 3)
    # the prompts of each of prefloop's rollouts, in order, for TRL's unshuffled dataset
    loop = SimpleNamespace(settings=SimpleNamespace(rollout_prompts=args.grpo_prompts),
                           prompts=prompts, seed=args.seed)  # fmt: skip
    ordered = [p for r in range(args.grpo_steps) for p in Loop.rollout_prompts(loop, r, Shard())]
    job = {"workload": "grpo", "model_dir": str(work / "arithmetic" / "sft"), "prompts": prompts,
           "ordered_prompts": ordered, "rollout_prompts": args.grpo_prompts, "samples": 4,
           "max_new_tokens": 48, "temperature": 1.0, "learning_rate": 2e-4, "beta": 0.04,
           "epsilon": 0.2, "loss_type": "grpo", "steps": args.grpo_steps, "seed": args.seed,
           "threads": args.threads, "reward": "prefloop.worlds.arithmetic:correctness_reward",
           "reward_path": str(ROOT / "src")}  # fmt: skip
    runs = alternate(job, args, pythons, work, args.vs == "trl")
    result = {"workload": "grpo", "counterpart": COUNTERPART["grpo"],
              "batch_size": args.grpo_prompts * 4}  # fmt: skip
    for side, found in runs.items():
        result[side] = {
            "tokens_per_second": statistics.median(r["tokens_per_second"] for r in found),
            "steps_per_second": statistics.median(r["steps_per_second"] for r in found),
            "all_tokens_per_second": [r["tokens_per_second"] for r in found],
            "peak_rss_mib": max(r["peak_rss_mib"] for r in found),
            "rewards": [r["rewards"] for r in found],
            **{k: found[0][k] for k in ("first_reward", "last_reward")},
        }
    if "trl" in runs:
        result["ratio"] = (
            result["prefloop"]["tokens_per_second"] / result["trl"]["tokens_per_second"]
        )
    return result


def measure(workload: str, fixture: dict, args, pythons: dict, work: Path) -> dict:
    batch = args.batch_size if workload != "sample" else args.sample_batch
    job = make_job(workload, fixture, args, batch)
    if workload == "sample":
        job["data"] = str(work / "prompts.json")
        pairs = json.loads((fixture["dir"] / "pairs.json").read_text())
        Path(job["data"]).write_text(json.dumps(pairs[: args.sample_prompts]))
    # without --vs trl only sampling has a counterpart (plain generate needs no TRL)
    runs = alternate(job, args, pythons, work, args.vs == "trl" or workload == "sample")
    # model FLOPs per token: 6 N for a training step (forward + backward), 2 N for sampling;
    # N counts the LM head (the tied embedding) except for the reward model, which has none
    weights = fixture["params"] - (fixture["embedding"] if workload == "rm" else 0)
    per_token = (2 if workload == "sample" else 6) * weights
    result = {"workload": workload, "counterpart": COUNTERPART[workload], "batch_size": batch}
    for side, found in runs.items():
        speed = statistics.median(r["tokens_per_second"] for r in found)
        result[side] = {
            "tokens_per_second": speed,
            "all_tokens_per_second": [r["tokens_per_second"] for r in found],
            "peak_rss_mib": max(r["peak_rss_mib"] for r in found),
            "mfu": speed * per_token / (args.gflops * 1e9),
            **{k: found[0][k] for k in ("first_loss", "last_loss") if k in found[0]},
        }
    if "trl" in runs:
        result["ratio"] = (
            result["prefloop"]["tokens_per_second"] / result["trl"]["tokens_per_second"]
        )
    return result


def markdown(results: list[dict], meta: dict) -> str:
    lines = [
        f"Machine: {meta['threads']} threads, fp32 matmul {meta['gflops']:.1f} GFLOP/s "
        f"(measured); torch {meta['torch']}, transformers {meta['transformers']}.",
        "",
        "| workload | size | shape | prefloop tokens/s | counterpart tokens/s | ratio "
        "| peak RSS MiB (prefloop / counterpart) | MFU (prefloop / counterpart) "
        "| first loss (p / c) | last loss (p / c) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def pair(p: dict, c: dict, key: str, fmt: str) -> str:
        left = format(p[key], fmt) if key in p else "–"
        right = format(c[key], fmt) if key in c else "–"
        return f"{left} / {right}"

    for r in results:
        p, c = r["prefloop"], r.get("trl", {})
        counterpart = f"{c['tokens_per_second']:.0f}" if c else "–"
        ratio = f"{r['ratio']:.2f}×" if "ratio" in r else "–"
        lines.append(
            f"| {r['workload']} | {r['size']} | {r['shape']} | {p['tokens_per_second']:.0f} | "
            f"{counterpart} | {ratio} | {pair(p, c, 'peak_rss_mib', '.0f')} | "
            f"{pair(p, c, 'mfu', '.1%')} | "
            f"{pair(p, c, 'first_loss', '.4f')} | {pair(p, c, 'last_loss', '.4f')} |"
        )
    for r in results:
        if r["workload"] == "grpo":
            p, c = r["prefloop"], r.get("trl", {})
            lines += ["", f"grpo: steps/s {pair(p, c, 'steps_per_second', '.3f')}, "
                      f"first reward {pair(p, c, 'first_reward', '.3f')}, "
                      f"last reward {pair(p, c, 'last_reward', '.3f')} (p / c)"]  # fmt: skip
    lines += ["", "Counterparts: " + "; ".join(f"{k}: {v}" for k, v in COUNTERPART.items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vs", choices=["trl"], default=None)
    parser.add_argument("--quick", action="store_true", help="fewer pairs and one A/B pair")
    parser.add_argument("--workloads", default="dpo,rm,sample")
    parser.add_argument("--sizes", default="5m,30m")
    parser.add_argument("--shapes", default="short,long")
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--sample-batch", type=int, default=16)
    parser.add_argument("--sample-prompts", type=int, default=32)
    parser.add_argument("--grpo-prompts", type=int, default=16, help="prompts per GRPO step")
    parser.add_argument("--grpo-steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    args.pairs = args.pairs or (64 if args.quick else 160)
    args.repeats = args.repeats or (1 if args.quick else 3)
    pythons = {"prefloop": sys.executable}
    if args.vs == "trl":
        pythons["trl"] = str(ensure_trl_venv())
    elif "sample" in args.workloads:
        pythons["trl"] = sys.executable  # plain generate needs transformers only
    import transformers

    args.gflops = matmul_gflops(args.threads)
    meta = {"threads": args.threads, "gflops": args.gflops, "torch": torch.__version__,
            "transformers": transformers.__version__, "pairs": args.pairs,
            "repeats": args.repeats, "argv": sys.argv[1:]}  # fmt: skip
    print(f"fp32 matmul: {args.gflops:.1f} GFLOP/s on {args.threads} threads", file=sys.stderr)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "grpo" in args.workloads.split(","):  # its own model: an SFT policy of the world
            results.append(measure_grpo(args, pythons, work) | {"size": "0.4m", "shape": "sum"})
        workloads = [w for w in args.workloads.split(",") if w != "grpo"]
        for size in args.sizes.split(",") if workloads else []:
            for shape in args.shapes.split(","):
                fixture = build_fixture(size, shape, args.pairs, work)
                print(
                    f"{size} {shape}: {fixture['params'] / 1e6:.1f} M parameters", file=sys.stderr
                )
                for workload in workloads:
                    found = measure(workload, fixture, args, pythons, work)
                    found |= {"size": size, "shape": shape, "params": fixture["params"]}
                    results.append(found)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    table = markdown(results, meta)
    (out / "results.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
