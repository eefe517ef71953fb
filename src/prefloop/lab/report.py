"""The lab's shared report: results over seeds, their 95 % intervals, verdicts, tables, plots.

A lab runs one function per seed, each returning a JSON-ready dict; this module turns those into
one report whose claims hold across seeds. Intervals are Student-t intervals over seeds,
mean ± t(0.975, n − 1) · s / √n with s the sample standard deviation (no bootstrap: with three
to five seeds a bootstrap interval is too narrow). A paired comparison (A vs B on the same seed)
is the t-interval of the per-seed differences A − B. A verdict states a claim only when that
interval excludes zero; otherwise it says "not distinguishable at N seeds". One seed gives no
interval, so no verdict.

The JSON layout every lab writes to ``out/NAME.json`` (``lab_report`` builds it)::

    {"lab": NAME, "seeds": [0, 1, 2], "fast": bool, "interval": INTERVAL_METHOD,
     "per_seed": [<one seed's report>, ...],          # each also in out/seed-S/
     "aggregate": {...},                               # the lab's numbers as interval dicts
     "comparisons": [{"name", "difference": <interval dict>, "verdict"}, ...],
     "seconds": wall time of the whole run}

with an interval dict ``{"mean", "low", "high", "n", "values"}`` (``Interval.to_dict``).

Usage, in a lab::

    from prefloop.lab import report as lr

    per_seed = lr.run_seeds(lambda seed, out: run_one(replace(config, seed=seed), out),
                            lr.seed_list(seed, seeds), out)
    gold = {name: lr.interval([s[name]["gold"] for s in per_seed]) for name in NAMES}
    vs = lr.compare("dpo − sft, gold", [s["dpo"]["gold"] for s in per_seed],
                    [s["sft"]["gold"] for s in per_seed],
                    claim="DPO raises gold reward over SFT", reverse="DPO lowers gold reward")
    report = lr.lab_report("demo", per_seed, {"gold": gold}, [vs], fast, seconds)
    text = "\n\n".join([lr.seeds_note(report), lr.table(["policy", "gold"], gold.items()),
                        lr.comparisons_markdown([vs])])
    lr.write_lab_report(out, "demo", report, text)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from prefloop.eval.report import plt, write_json

INTERVAL_METHOD = "95% Student-t interval over seeds: mean ± t(0.975, n-1) · sd / sqrt(n)"


DEFAULT_SEEDS = 3  # a full run's seeds; ``--fast`` defaults to one


def seed_list(seed: int, seeds: int | None = None, fast: bool = False) -> list[int]:
    """``seeds`` consecutive seeds from ``seed`` (seed, seed + 1, ...); by default
    ``DEFAULT_SEEDS`` for a full run and one for ``--fast``."""
    seeds = seeds if seeds is not None else (1 if fast else DEFAULT_SEEDS)
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    return list(range(seed, seed + seeds))


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (scipy)."""
    return float(stats.t.ppf(p, df))


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its 95 % t-interval (``low``/``high`` infinite for one seed)."""

    mean: float
    low: float
    high: float
    values: tuple[float, ...]

    @classmethod
    def from_dict(cls, cell: dict[str, Any]) -> Interval:
        """The inverse of ``to_dict``, for code reading a saved report."""
        low, high = cell["low"], cell["high"]
        return cls(cell["mean"], -math.inf if low is None else low,
                   math.inf if high is None else high, tuple(cell["values"]))  # fmt: skip

    @property
    def n(self) -> int:
        return len(self.values)

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, Any]:
        bounded = self.n > 1
        return {"mean": self.mean, "low": self.low if bounded else None,
                "high": self.high if bounded else None, "n": self.n,
                "values": list(self.values)}  # fmt: skip

    def text(self, digits: int = 3, sign: bool = False) -> str:
        """``mean ± half-width`` (the t-interval is symmetric); the mean alone for one seed."""
        fmt = f"{'+' if sign else ''}.{digits}f"
        if self.n == 1:
            return format(self.mean, fmt)
        return f"{format(self.mean, fmt)} ± {self.high - self.mean:.{digits}f}"


def interval(values: Iterable[float], confidence: float = 0.95) -> Interval:
    """Mean and Student-t interval of per-seed values."""
    data = np.asarray(list(values), dtype=float)
    if data.size == 0:
        raise ValueError("an interval needs at least one value")
    mean = float(data.mean())
    if data.size == 1:
        return Interval(mean, -math.inf, math.inf, (mean,))
    half = t_quantile(0.5 + confidence / 2, data.size - 1) * data.std(ddof=1) / math.sqrt(data.size)
    return Interval(mean, mean - half, mean + half, tuple(float(v) for v in data))


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Interval:
    """The interval of A − B seed by seed (``a[i]`` and ``b[i]`` come from the same seed)."""
    if len(a) != len(b):
        raise ValueError(
            f"paired values need one per seed on both sides, got {len(a)} and {len(b)}"
        )
    return interval([x - y for x, y in zip(a, b)], confidence)


def verdict(difference: Interval, claim: str, reverse: str) -> str:
    """``claim`` if the interval of A − B lies above zero, ``reverse`` if below, else withheld."""
    seeds = f"{difference.n} seed{'s' if difference.n > 1 else ''}"
    if difference.n == 1:
        return f"not distinguishable at 1 seed (one seed gives no interval; A − B = " \
               f"{difference.mean:+.3f})"  # fmt: skip
    span = f"A − B = {difference.mean:+.3f}, 95% CI [{difference.low:+.3f}, {difference.high:+.3f}]"
    if difference.low > 0:
        return f"{claim} ({span}, {seeds})"
    if difference.high < 0:
        return f"{reverse} ({span}, {seeds})"
    return f"not distinguishable at {seeds} ({span})"


@dataclass(frozen=True)
class Comparison:
    """A paired comparison A − B over seeds and the verdict it supports."""

    name: str
    difference: Interval
    claim: str
    reverse: str

    @property
    def verdict(self) -> str:
        return verdict(self.difference, self.claim, self.reverse)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "difference": self.difference.to_dict(),
                "verdict": self.verdict}  # fmt: skip


def compare(
    name: str, a: Sequence[float], b: Sequence[float], claim: str, reverse: str
) -> Comparison:
    """Compare per-seed values ``a`` against ``b``: ``claim`` holds if A − B > 0 across seeds."""
    return Comparison(name, paired_difference(a, b), claim, reverse)


def method_run(seed_report: dict, method: str) -> dict:
    """The entry of ``method`` in one seed's ``runs`` list (labs that compare methods)."""
    return next(r for r in seed_report["runs"] if r["method"] == method)


def run_seeds(run_one: Callable[[int, Path], dict], seeds: Sequence[int], out: Path) -> list[dict]:
    """``run_one(seed, out/seed-S)`` for every seed, in order; their reports."""
    return [run_one(seed, Path(out) / f"seed-{seed}") for seed in seeds]


def _plain(value: Any) -> Any:
    if isinstance(value, Interval):
        return value.to_dict()
    if isinstance(value, Comparison):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def lab_report(
    lab: str, per_seed: list[dict], aggregate: dict, comparisons: Sequence[Comparison],
    fast: bool, seconds: float, **extra: Any,
) -> dict:  # fmt: skip
    """The lab's JSON report in the layout of this module's docstring (intervals as dicts)."""
    return {"lab": lab, "seeds": [s["seed"] for s in per_seed], "fast": fast,
            "interval": INTERVAL_METHOD, **extra, "per_seed": per_seed,
            "aggregate": _plain(aggregate), "comparisons": _plain(list(comparisons)),
            "seconds": seconds}  # fmt: skip


def write_lab_report(out: Path, name: str, report: dict, markdown: str) -> Path:
    """``out/NAME.json`` and ``out/NAME.md``; returns the JSON path."""
    (Path(out) / f"{name}.md").write_text(markdown.rstrip() + "\n")
    return write_json(Path(out) / f"{name}.json", report)


def seeds_note(report: dict) -> str:
    """One line saying how many seeds stand behind the numbers and what ± means."""
    seeds, mode = report["seeds"], "`--fast`" if report["fast"] else "full"
    listed = ", ".join(map(str, seeds))
    if len(seeds) == 1:
        return (f"{mode} run, **1 seed** ({listed}): no intervals and no verdicts; rerun with "
                "`--seeds 3` or more for claims that hold across seeds.")  # fmt: skip
    return (f"{mode} run, {len(seeds)} seeds ({listed}); `a ± h` is the mean over seeds and the "
            "half-width of its 95 % t-interval over seeds; wall time "
            f"{report['seconds'] / 60:.1f} min.")  # fmt: skip


def as_interval(value: Interval | dict[str, Any]) -> Interval:
    """An Interval, or an interval dict from a saved report, as an Interval."""
    return value if isinstance(value, Interval) else Interval.from_dict(value)


def text(value: Interval | dict[str, Any], digits: int = 3, sign: bool = False) -> str:
    """``mean ± half-width`` of an Interval or a saved interval dict."""
    return as_interval(value).text(digits, sign)


def _cell(value: Any, digits: int = 3) -> str:
    if isinstance(value, dict) and "values" in value:
        value = Interval.from_dict(value)
    if isinstance(value, Interval):
        return value.text(digits)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 3) -> str:
    """A Markdown table; Interval cells print as ``mean ± half-width``, floats to ``digits``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c, digits) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def comparisons_markdown(comparisons: Iterable[Comparison | dict[str, Any]]) -> str:
    """Every paired comparison (objects or their saved dicts) with A − B and its verdict."""
    rows = [_plain(c) for c in comparisons]
    return table(
        ["comparison (A − B, paired by seed)", "A − B", "verdict"],
        [(c["name"], Interval.from_dict(c["difference"]).text(sign=True), c["verdict"])
         for c in rows],
    )  # fmt: skip


def plot_bars(path: Path, groups: dict[str, dict[str, Any]], ylabel: str, title: str) -> Path:
    """Grouped bars with 95 % error bars: one group per key of ``groups``, one bar per series
    (Intervals or saved interval dicts)."""
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups) * max(1, len(series)) / 2), 4))
    width = 0.8 / max(1, len(series))
    for i, name in enumerate(series):
        xs = [x + i * width for x, g in enumerate(groups.values()) if name in g]
        cells = [as_interval(g[name]) for g in groups.values() if name in g]
        errors = [0.0 if c.n == 1 else c.high - c.mean for c in cells]
        ax.bar(xs, [c.mean for c in cells], width, yerr=errors, capsize=3, label=name)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(groups))], list(groups))
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_matrix(path: Path, names: Sequence[str], matrix: Sequence[Sequence[float]],
                title: str) -> Path:  # fmt: skip
    """A heat map of a square matrix of probabilities in [0, 1], each cell printed."""
    values = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(1.5 + 0.75 * len(names), 1.0 + 0.6 * len(names)))
    image = ax.imshow(values, cmap="RdBu", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for (i, j), value in np.ndenumerate(values):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


Curve = tuple[Sequence[float], Sequence[Any]]  # x values, Intervals (or interval dicts)


def plot_curves(
    path: Path, panels: dict[str, dict[str, Curve]], xlabel: str, ylabel: str,
    styles: dict[str, str] | None = None, columns: int = 2,
) -> Path:  # fmt: skip
    """One panel per key of ``panels`` (``columns`` per row); in each, one line per series
    (x, intervals) with 95 % error bars. ``styles`` maps a series name to a matplotlib format
    string (e.g. ``"k:"``)."""
    columns = min(columns, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 3.8 * rows), squeeze=False)
    for ax, (title, series) in zip(axes.flat, panels.items()):
        for name, (xs, cells) in series.items():
            cells = [as_interval(c) for c in cells]
            errors = [0.0 if c.n == 1 else c.high - c.mean for c in cells]
            fmt = (styles or {}).get(name, "-o")
            ax.errorbar(xs, [c.mean for c in cells], yerr=errors, fmt=fmt, ms=3, capsize=2, lw=1,
                        label=name)  # fmt: skip
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
