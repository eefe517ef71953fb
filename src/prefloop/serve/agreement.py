"""Inter-annotator agreement from the definitions: Krippendorff's alpha, Cohen's and Fleiss' kappa.

Data are ``units``: a mapping from a unit (what was judged) to ``{coder: value}``. Missing
values are simply absent. Each statistic returns ``None`` when it is undefined (no pairable
data, or no variation to chance-correct against).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Mapping
from itertools import combinations, permutations

Units = Mapping[Hashable, Mapping[Hashable, Hashable]]


def _nominal(a: Hashable, b: Hashable, _counts: Counter) -> float:
    return float(a != b)


def _interval(a: float, b: float, _counts: Counter) -> float:
    return float((a - b) ** 2)


def _ordinal(a: float, b: float, counts: Counter) -> float:
    lo, hi = sorted((a, b))
    between = sum(n for v, n in counts.items() if lo <= v <= hi)
    return float((between - (counts[a] + counts[b]) / 2) ** 2)


METRICS: dict[str, Callable[[Hashable, Hashable, Counter], float]] = {
    "nominal": _nominal,
    "interval": _interval,
    "ordinal": _ordinal,
}


def krippendorff_alpha(units: Units, metric: str = "nominal") -> float | None:
    """``1 - D_o / D_e`` over the coincidence matrix of pairable values (units with 2+ values)."""
    delta = METRICS[metric]
    coincidence: Counter = Counter()
    for values in units.values():
        vals = list(values.values())
        if len(vals) < 2:
            continue
        for a, b in permutations(range(len(vals)), 2):
            coincidence[vals[a], vals[b]] += 1 / (len(vals) - 1)
    marginals: Counter = Counter()
    for (c, _k), o in coincidence.items():
        marginals[c] += o
    n = sum(marginals.values())
    if n <= 1:
        return None
    observed = sum(o * delta(c, k, marginals) for (c, k), o in coincidence.items()) / n
    expected = sum(
        marginals[c] * marginals[k] * delta(c, k, marginals) for c in marginals for k in marginals
    ) / (n * (n - 1))
    return None if expected == 0 else 1 - observed / expected


def cohen_kappa(units: Units, coder_a: Hashable, coder_b: Hashable) -> tuple[float | None, int]:
    """Cohen's kappa of two coders over the units both coded, and how many units that was."""
    both = [(v[coder_a], v[coder_b]) for v in units.values() if coder_a in v and coder_b in v]
    if not both:
        return None, 0
    n = len(both)
    p_o = sum(a == b for a, b in both) / n
    first, second = Counter(a for a, _ in both), Counter(b for _, b in both)
    p_e = sum(first[c] * second[c] for c in first) / n**2
    return (None if p_e == 1 else (p_o - p_e) / (1 - p_e)), n


def fleiss_kappa(units: Units) -> float | None:
    """Fleiss' kappa over units with 2+ ratings.

    With a varying number of raters per unit, each unit's agreement uses its own count
    ``P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1))`` and category shares pool all ratings;
    with a constant count this is exactly Fleiss (1971).
    """
    rated = [Counter(v.values()) for v in units.values() if len(v) >= 2]
    if not rated:
        return None
    per_unit = []
    totals: Counter = Counter()
    for counts in rated:
        m = sum(counts.values())
        per_unit.append((sum(c * c for c in counts.values()) - m) / (m * (m - 1)))
        totals.update(counts)
    p_bar = sum(per_unit) / len(per_unit)
    total = sum(totals.values())
    p_e = sum((c / total) ** 2 for c in totals.values())
    return None if p_e == 1 else (p_bar - p_e) / (1 - p_e)


def summary(units: Units, metric: str = "nominal") -> dict:
    """All three statistics; Cohen's kappa for every coder pair and their mean."""
    coders = sorted({c for v in units.values() for c in v}, key=str)
    pairs = []
    for a, b in combinations(coders, 2):
        kappa, n = cohen_kappa(units, a, b)
        if n:
            pairs.append({"coders": [a, b], "kappa": kappa, "units": n})
    defined = [p["kappa"] for p in pairs if p["kappa"] is not None]
    return {
        "units": sum(len(v) >= 2 for v in units.values()),
        "coders": len(coders),
        "metric": metric,
        "krippendorff_alpha": krippendorff_alpha(units, metric),
        "fleiss_kappa": fleiss_kappa(units),
        "cohen_kappa_mean": sum(defined) / len(defined) if defined else None,
        "cohen_kappa": pairs,
    }


def group_units(rows: list[tuple[Hashable, Hashable, Hashable]]) -> dict:
    """``(unit, coder, value)`` rows to the units mapping."""
    units: dict = defaultdict(dict)
    for unit, coder, value in rows:
        units[unit][coder] = value
    return dict(units)
