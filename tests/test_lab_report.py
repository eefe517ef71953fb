"""The lab's shared report: t-intervals and paired differences by hand, verdicts, files."""

from __future__ import annotations

import json
import math

import pytest

from prefloop.lab import report as lr


def test_t_quantiles_match_the_closed_forms():
    # df = 1 (Cauchy): t = tan(pi (p - 1/2)); df = 2: F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    assert lr.t_quantile(0.975, 1) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-7)
    q = 2 * 0.975 - 1
    assert lr.t_quantile(0.975, 2) == pytest.approx(q * math.sqrt(2 / (1 - q * q)), rel=1e-7)
    assert lr.t_quantile(0.975, 2) == pytest.approx(4.302653, abs=1e-6)
    assert lr.t_quantile(0.975, 4) == pytest.approx(2.776445, abs=1e-6)  # printed t tables


def test_interval_of_one_two_three_by_hand():
    # mean 2, sample sd 1, half-width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051 = 2.484138
    result = lr.interval([1.0, 2.0, 3.0])
    assert result.mean == 2.0 and result.n == 3
    assert result.low == pytest.approx(2 - 2.484138, abs=1e-6)
    assert result.high == pytest.approx(2 + 2.484138, abs=1e-6)
    assert result.text() == "2.000 ± 2.484"
    assert result.to_dict() == {"mean": 2.0, "low": pytest.approx(-0.484138, abs=1e-6),
                                "high": pytest.approx(4.484138, abs=1e-6), "n": 3,
                                "values": [1.0, 2.0, 3.0]}  # fmt: skip


def test_paired_difference_is_the_interval_of_per_seed_differences():
    # differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, half-width 0.2484138 -> crosses zero
    a, b = [0.5, 0.7, 0.4], [0.4, 0.5, 0.1]
    difference = lr.paired_difference(a, b)
    assert difference.mean == pytest.approx(0.2)
    assert difference.high - difference.mean == pytest.approx(0.2484138, abs=1e-6)
    assert not difference.excludes_zero()
    # the unpaired intervals overlap widely; the pairing is what a verdict is built on
    tight = lr.paired_difference([0.5, 0.7, 0.4], [0.3, 0.5, 0.2])  # all differences 0.2
    assert tight.low == pytest.approx(0.2) and tight.excludes_zero()
    with pytest.raises(ValueError, match="one per seed on both sides, got 2 and 3"):
        lr.paired_difference([1.0, 2.0], [1.0, 2.0, 3.0])


def test_verdict_only_when_the_interval_excludes_zero():
    up = lr.compare("x", [1.0, 1.1, 1.2], [0.0, 0.0, 0.1], "A wins", "B wins")
    assert up.verdict.startswith("A wins (A − B = +1.067, 95% CI [")
    down = lr.compare("x", [0.0, 0.0, 0.1], [1.0, 1.1, 1.2], "A wins", "B wins")
    assert down.verdict.startswith("B wins (A − B = -1.067")
    crossing = lr.compare("x", [1.0, 2.0, 3.0], [0.0, 0.0, 0.0], "A wins", "B wins")
    assert crossing.verdict == (
        "not distinguishable at 3 seeds (A − B = +2.000, 95% CI [-0.484, +4.484])"
    )
    single = lr.compare("x", [5.0], [0.0], "A wins", "B wins")
    assert single.verdict.startswith("not distinguishable at 1 seed")
    assert lr.interval([5.0]).text() == "5.000" and lr.interval([5.0]).to_dict()["low"] is None


def test_seed_list_and_its_message():
    assert lr.seed_list(4, 3) == [4, 5, 6]
    assert lr.seed_list(2) == [2, 3, 4] and lr.seed_list(2, fast=True) == [2]
    with pytest.raises(ValueError, match="--seeds must be at least 1, got 0"):
        lr.seed_list(0, 0)


def test_lab_report_layout_tables_and_plots(tmp_path):
    per_seed = [{"seed": s, "gold": {"a": g, "b": g - d}} for s, g, d in
                [(0, 0.5, 0.1), (1, 0.6, 0.2), (2, 0.7, 0.15)]]  # fmt: skip
    gold = {k: lr.interval([s["gold"][k] for s in per_seed]) for k in ("a", "b")}
    vs = lr.compare("a − b", [s["gold"]["a"] for s in per_seed],
                    [s["gold"]["b"] for s in per_seed], "a beats b", "b beats a")  # fmt: skip
    report = lr.lab_report("toy", per_seed, {"gold": gold}, [vs], fast=False, seconds=60.0)
    text = "\n\n".join([lr.seeds_note(report), lr.table(["x", "gold"], gold.items()),
                        lr.comparisons_markdown([vs])])  # fmt: skip
    lr.write_lab_report(tmp_path, "toy", report, text)
    saved = json.loads((tmp_path / "toy.json").read_text())
    assert saved["seeds"] == [0, 1, 2] and saved["per_seed"][1]["gold"]["a"] == 0.6
    assert saved["aggregate"]["gold"]["a"]["mean"] == pytest.approx(0.6)
    assert saved["comparisons"][0]["verdict"].startswith("a beats b (A − B = +0.150")
    md = (tmp_path / "toy.md").read_text()
    assert "full run, 3 seeds (0, 1, 2)" in md and "wall time 1.0 min" in md
    assert "| a | 0.600 ± 0.248 |" in md  # sd 0.1: 4.302653 * 0.1 / sqrt(3)
    lr.plot_bars(tmp_path / "bars.png", {"gold": gold}, "gold", "toy")
    lr.plot_curves(
        tmp_path / "curves.png", {"p": {"a": ([1, 2], [gold["a"], gold["b"]])}}, "x", "y"
    )
    assert (tmp_path / "bars.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
