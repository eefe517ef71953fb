"""Reports: JSON for machines, Markdown for people, PNG where a picture says it faster."""

from __future__ import annotations

import json
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TRACKED_PACKAGES = ("prefloop", "torch", "transformers", "tokenizers", "datasets", "numpy")


def environment() -> dict[str, str]:
    """Python, platform and package versions, so any result can be traced and rerun."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_json(path: str | Path, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def write_run_config(out_dir: str | Path, config: dict) -> Path:
    """``run_config.json``: the resolved configuration plus the software environment."""
    return write_json(
        Path(out_dir) / "run_config.json", {"config": config, "environment": environment()}
    )


def policy_table(entries: dict[str, dict]) -> str:
    """Markdown table of gold reward, each aspect, KL and win rate, one row per policy."""
    aspects = sorted({a for e in entries.values() for a in e.get("aspects", {})})
    header = ["policy", "gold reward", *aspects, "KL (nats)", "win rate vs SFT"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, e in entries.items():
        cells = [name, f"{e['gold_reward']:.3f}", *(f"{e['aspects'][a]:.3f}" for a in aspects),
                 f"{e['kl']:.3f}", f"{e.get('win_rate_vs_sft', float('nan')):.3f}"]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot_policy_comparison(entries: dict[str, dict], path: str | Path) -> Path:
    """Gold reward and each aspect per policy (bars), with KL from SFT in the legend."""
    aspects = ["gold_reward", *sorted({a for e in entries.values() for a in e.get("aspects", {})})]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(entries)
    for i, (name, e) in enumerate(entries.items()):
        values = [e["gold_reward"], *(e["aspects"][a] for a in aspects[1:])]
        xs = [x + i * width for x in range(len(aspects))]
        ax.bar(xs, values, width, label=f"{name} (KL {e['kl']:.2f})")
    ax.set_xticks([x + width * (len(entries) - 1) / 2 for x in range(len(aspects))], aspects)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel("mean gold score")
    ax.set_title("True (gold) reward by aspect")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
