"""Active selection: choose which candidate to ask a judge about next.

Pure functions over arrays, usable from a training loop without the server; the server's
next-item endpoint calls the same :func:`select_next`.
"""

from prefloop.query.disagreement import ensemble_disagreement
from prefloop.query.dueling import dueling_ucb_scores, fit_linear_utility
from prefloop.query.select import RULES, rank_candidates, register_rule, rule_scores, select_next

__all__ = [
    "RULES",
    "dueling_ucb_scores",
    "ensemble_disagreement",
    "fit_linear_utility",
    "rank_candidates",
    "register_rule",
    "rule_scores",
    "select_next",
]
