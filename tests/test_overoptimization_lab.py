"""Over-optimization lab pieces: ensemble standardisation/combiners and the curve verdicts."""

from __future__ import annotations

import json

import pytest
import torch

from prefloop.lab.overoptimization import (
    _aggregate,
    _average_curves,
    _comparisons,
    _summarize,
    overoptimization_markdown,
    plot_overoptimization,
)
from prefloop.lab.report import lab_report
from prefloop.models.ensemble import RewardEnsemble
from prefloop.train.ensemble import bootstrap_sample


class _Member:
    """A reward model stand-in: a fixed score per response."""

    def __init__(self, table: dict[str, float]):
        self.table = table

    def score(self, prompts, responses):
        return torch.tensor([self.table[r] for r in responses])


def test_ensemble_standardises_members_then_combines_by_hand():
    a = _Member({"x": 0.0, "y": 2.0, "z": 4.0})  # mean 2, std 2
    b = _Member({"x": 10.0, "y": 11.0, "z": 9.0})  # mean 10, std 1
    ensemble = RewardEnsemble([a, b])
    ensemble.normalize_on(["p"] * 3, ["x", "y", "z"])
    members = ensemble.member_scores(["p"] * 3, ["x", "y", "z"])
    assert members.tolist() == [pytest.approx([-1.0, 0.0, 1.0]), pytest.approx([0.0, 1.0, -1.0])]
    assert ensemble.score(["p"] * 3, ["x", "y", "z"], "mean").tolist() == pytest.approx(
        [-0.5, 0.5, 0.0]
    )
    assert ensemble.score(["p"] * 3, ["x", "y", "z"], "wco").tolist() == pytest.approx(
        [-1.0, 0.0, -1.0]
    )
    # uwo: mean − 0.5 · population variance; variances 0.25, 0.25, 1
    assert ensemble.score(["p"] * 3, ["x", "y", "z"], "uwo", 0.5).tolist() == pytest.approx(
        [-0.625, 0.375, -0.5]
    )


def test_bootstrap_is_a_seeded_resample():
    data = list(range(50))
    first, again = bootstrap_sample(data, 3), bootstrap_sample(data, 3)
    assert first == again and len(first) == 50 and len(set(first)) < 50


def _curve(golds, proxies):
    return [{"n": 2**i, "kl": float(i), "proxy": p, "gold": g}
            for i, (g, p) in enumerate(zip(golds, proxies))]  # fmt: skip


def test_summary_detects_overoptimization_and_its_absence():
    over = _summarize(_curve([0.0, 0.3, 0.5, 0.4, 0.2], [0.0, 1.0, 2.0, 3.0, 4.0]))
    assert over["overoptimizes"] and over["peak_n"] == 4
    assert over["gold_drop_from_peak"] == pytest.approx(0.3)
    assert over["proxy_rise_after_peak"] == pytest.approx(2.0)
    rising = _summarize(_curve([0.0, 0.3, 0.5, 0.6, 0.7], [0.0, 1.0, 2.0, 3.0, 4.0]))
    assert not rising["overoptimizes"] and rising["peak_n"] == 16
    flat_proxy = _summarize(_curve([0.0, 0.5, 0.2], [0.0, 1.0, 0.5]))
    assert not flat_proxy["overoptimizes"]  # gold falls but so does the proxy


def _seed_report(seed, final_single, final_wco):
    """One seed's report: a single RM peaking at n = 2, combiners ending at ``final_wco``."""
    curves = {
        name: _curve([0.0, 0.5, final_single], [0.0, 1.0, 2.0]) for name in ("single", "mean")
    }
    curves["wco"] = curves["uwo"] = _curve([0.0, 0.5, final_wco], [0.0, 0.8, 1.0])
    shared = {k: v for k, v in curves.items() if k != "single"}
    summary = {k: _summarize(v) for k, v in curves.items()}
    setting = {"label_noise": 0.25, "pairs": 10, "flipped": 2, "curves": curves,
               "summary": summary, "head_heldout_accuracy": [0.7, 0.8], "train_seconds": 2.0,
               "score_seconds": 1.0,
               "shared_heads": {"curves": shared, "summary": {k: summary[k] for k in shared},
                                "head_heldout_accuracy": [0.7], "train_seconds": 1.0,
                                "score_seconds": 0.5}}  # fmt: skip
    return {"world": "reviews", "seed": seed, "settings": [setting],
            "pool": {"prompts": 2, "samples": 4, "mean_gold": 0.0},
            "gold_oracle": _curve([0.0, 0.6, 0.9], [0.0, 0.6, 0.9])}  # fmt: skip


def test_report_over_seeds_states_verdicts_only_where_the_interval_excludes_zero(tmp_path):
    # wco − single at max n: 0.25, 0.30, 0.35 (CI excludes 0); mean − single: 0 on every seed
    per_seed = [_seed_report(0, 0.2, 0.45), _seed_report(1, 0.1, 0.4), _seed_report(2, 0.0, 0.35)]
    report = lab_report("overoptimization", per_seed, _aggregate(per_seed),
                        _comparisons(per_seed), False, 1.0, world="reviews")  # fmt: skip
    plot_overoptimization(report, tmp_path / "plot.png")
    text = overoptimization_markdown(report)
    assert (tmp_path / "plot.png").stat().st_size > 0
    assert "full run, 3 seeds (0, 1, 2)" in text
    # single: drop from peak 0.3, 0.4, 0.5 -> 0.4 ± t(0.975, 2) * 0.1 / sqrt(3) = 0.248
    assert (
        "| single | 0.500 ± 0.000 | 0.100 ± 0.248 | 0.400 ± 0.248 | 1.000 ± 0.000 | 4 | 3/3 |"
        in text
    )
    assert (
        "| noise 25%: wco − single, gold at max n | +0.300 ± 0.124 | wco ends above one RM" in text
    )
    assert "| noise 25%: wco − single, gold drop from peak | -0.300 ± 0.124 | wco curbs" in text
    assert "| noise 25%: mean − single, gold at max n | +0.000 ± 0.000 | not distinguishable" in (
        text
    )
    saved = json.loads(json.dumps(report))
    assert saved["aggregate"]["settings"][0]["selectors"]["wco (shared heads)"]["n"] == [1, 2, 4]


def test_single_curve_is_the_pointwise_mean_of_members():
    mean = _average_curves([_curve([0.0, 1.0], [2.0, 4.0]), _curve([1.0, 2.0], [0.0, 0.0])])
    assert mean == [{"n": 1, "kl": 0.0, "proxy": 1.0, "gold": 0.5},
                    {"n": 2, "kl": 1.0, "proxy": 2.0, "gold": 1.5}]  # fmt: skip
    assert isinstance(mean[1]["n"], int)
