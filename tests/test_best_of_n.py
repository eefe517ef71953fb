import math

import numpy as np
import pytest

from prefloop.eval.best_of_n import best_of_n_curve, best_of_n_kl, best_of_n_weights


def test_weights_match_enumerating_every_subset():
    # of 4 samples, 2-subsets: the i-th smallest is the max in i-1 of the 6 subsets
    assert best_of_n_weights(4, 2) == pytest.approx([0, 1 / 6, 2 / 6, 3 / 6])
    assert best_of_n_weights(5, 1) == pytest.approx([0.2] * 5)
    assert best_of_n_weights(5, 5) == pytest.approx([0, 0, 0, 0, 1])
    with pytest.raises(ValueError, match=r"n must be in \[1, 3\]"):
        best_of_n_weights(3, 4)


def test_curve_selects_by_proxy_and_reports_gold_of_the_selection():
    proxy = np.array([[1.0, 2.0, 3.0, 4.0]])
    gold = np.array([[4.0, 3.0, 2.0, 1.0]])  # a proxy that is exactly wrong
    curve = best_of_n_curve(proxy, gold, [1, 2, 4])
    assert [c["proxy"] for c in curve] == pytest.approx([2.5, 10 / 3, 4.0])
    assert [c["gold"] for c in curve] == pytest.approx([2.5, 5 / 3, 1.0])
    assert curve[2]["kl"] == pytest.approx(math.log(4) - 3 / 4)
    assert best_of_n_kl(1) == 0.0
