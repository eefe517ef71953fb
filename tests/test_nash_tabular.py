"""The tabular preference world: exact quantities, the minimax LP, BT-RLHF and the Nash methods."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from prefloop.algorithms.nash import (
    DNO,
    INPO,
    OSP,
    SPO,
    Iterate,
    NashMD,
    bradley_terry_scores,
    bt_rlhf_policy,
    minimise,
    run_tabular,
)
from prefloop.cli import app
from prefloop.eval.games import (
    exploitability,
    minimax_winner,
    regularized_equilibrium,
    regularized_gap,
    win_probability,
)
from prefloop.lab.nash import NashLabConfig, run_lab
from prefloop.models.tabular import TabularPolicy
from prefloop.objectives.nash import self_play_win_rates
from prefloop.worlds.games import (
    GameError,
    annotator_mixture,
    builtin_games,
    condorcet_not_bt,
    load_game,
    make_game,
    rock_paper_scissors,
)

# A small non-symmetric game for hand-computed steps: a cycle with unequal margins.
P3 = np.array([[0.5, 0.7, 0.2], [0.3, 0.5, 0.6], [0.8, 0.4, 0.5]])
PI_T = np.array([0.5, 0.3, 0.2])
MU = np.array([0.2, 0.5, 0.3])
TAU, ETA = 0.1, 2.0


def _iterate() -> Iterate:
    return Iterate(
        torch.log(torch.tensor(PI_T[None])),
        torch.log(torch.tensor(MU[None])),
        torch.tensor(P3[None]),
    )


def _normalised(weights) -> np.ndarray:
    weights = np.asarray(weights)
    return weights / weights.sum()


def test_minimax_winner_of_rock_paper_scissors_is_uniform_and_unexploitable():
    game = rock_paper_scissors()
    assert game.preference[0, 1, 0] == pytest.approx(0.9)  # paper beats rock, noise 0.2
    winner = minimax_winner(game.preference)
    np.testing.assert_allclose(winner, np.full((1, 3), 1 / 3), atol=1e-9)
    assert exploitability(game.preference, winner) == pytest.approx(0.0, abs=1e-12)
    assert exploitability(game.preference, game.start) == pytest.approx(
        0.6 * 0.9 + 0.3 * 0.5 + 0.1 * 0.1 - 0.5
    )


def test_minimax_winner_of_a_condorcet_game_is_the_condorcet_winner():
    game = condorcet_not_bt()
    np.testing.assert_allclose(minimax_winner(game.preference), [[1, 0, 0, 0]], atol=1e-9)
    # ... while Bradley–Terry ranks B first.
    assert bradley_terry_scores(game.preference).argmax() == 1


def test_annotator_mixture_is_cyclic_in_aggregate_and_its_minimax_winner_is_mixed():
    game = annotator_mixture()
    p = game.preference[0]
    assert p[0, 1] > 0.5 and p[1, 2] > 0.5 and p[2, 0] > 0.5  # A ≻ B ≻ C ≻ A
    for group in game.group_preferences[:, 0]:  # each group is transitive: a total order
        wins = (group > 0.5).sum(axis=1)
        assert sorted(wins) == [0, 1, 2, 3]
    winner = minimax_winner(game.preference)
    assert exploitability(game.preference, winner) == pytest.approx(0.0, abs=1e-9)
    assert (winner[0, :3] > 0.1).all() and winner[0, 3] < 1e-9


def test_regularized_equilibrium_is_a_fixed_point_with_zero_gap():
    pref = P3[None]
    eq = regularized_equilibrium(pref, MU[None], TAU)
    np.testing.assert_allclose(eq[0], _normalised(MU * np.exp(P3 @ eq[0] / TAU)), atol=1e-8)
    assert regularized_gap(pref, eq, MU[None], TAU) == pytest.approx(0.0, abs=1e-9)
    assert regularized_gap(pref, PI_T[None], MU[None], TAU) > 0.01
    assert win_probability(pref, eq, eq) == pytest.approx(0.5)


def test_nash_md_step_by_hand():
    mixture = _normalised(PI_T ** (1 - ETA * TAU) * MU ** (ETA * TAU))
    wins = [sum(P3[y, j] * mixture[j] for j in range(3)) for y in range(3)]
    expected = _normalised(mixture * np.exp(ETA * np.array(wins)))
    step = NashMD(tau=TAU, eta=ETA).step(_iterate()).exp().numpy()[0]
    np.testing.assert_allclose(step, expected, rtol=1e-12)


def test_inpo_and_dno_steps_by_hand_and_equal_under_the_same_tau():
    wins = P3 @ PI_T  # P(y ≻ π_t)
    expected = _normalised(PI_T ** (1 - ETA * TAU) * MU ** (ETA * TAU) * np.exp(ETA * wins))
    inpo = INPO(tau=TAU, eta=ETA).step(_iterate()).exp().numpy()[0]
    dno = DNO(tau=TAU, eta=ETA).step(_iterate()).exp().numpy()[0]
    np.testing.assert_allclose(inpo, expected, rtol=1e-12)
    np.testing.assert_allclose(dno, expected, rtol=1e-12)
    unregularised = DNO(tau=0.0, eta=ETA).step(_iterate()).exp().numpy()[0]
    np.testing.assert_allclose(unregularised, _normalised(PI_T * np.exp(ETA * wins)), rtol=1e-12)


def test_spo_step_by_hand_and_its_win_rate_reward():
    wins = P3 @ PI_T
    ht = ETA * TAU
    expected = _normalised((PI_T * MU**ht * np.exp(ETA * wins)) ** (1 / (1 + ht)))
    np.testing.assert_allclose(
        SPO(tau=TAU, eta=ETA).step(_iterate()).exp().numpy()[0], expected, rtol=1e-12
    )
    labels = torch.tensor([[0.5, 1.0, 0.0], [0.0, 0.5, 1.0], [1.0, 1.0, 0.5]])
    np.testing.assert_allclose(self_play_win_rates(labels), [0.5, 0.5, 1.0])


@pytest.mark.parametrize(
    "method",
    [
        NashMD(tau=TAU, eta=ETA),
        SPO(tau=TAU, eta=ETA),
        INPO(tau=TAU, eta=ETA),
        DNO(tau=TAU, eta=ETA),
    ],
)
def test_minimising_the_sample_based_loss_lands_on_the_closed_form_step(method):
    iterate = _iterate()
    target = method.step(iterate)
    at_target = TabularPolicy(target)
    loss = method.loss(at_target.log_probs(), iterate)
    (gradient,) = torch.autograd.grad(loss, at_target.logits)
    assert gradient.abs().max() < 1e-9  # the closed form is a stationary point of the loss
    policy = TabularPolicy(iterate.previous)
    steps, lr = (2000, 0.02) if method.on_policy else (200, 0.0)
    minimise(policy, lambda logps: method.loss(logps, iterate), steps, lr, method.on_policy)
    np.testing.assert_allclose(policy.probs(), target.exp().numpy(), atol=2e-4)


def test_osp_step_is_the_weighted_bt_fit_of_its_self_judged_pairs():
    # Pairs come from π_0 = μ; on a BT-generated preference any positive pair weights recover
    # the utilities u, so the SPCE minimiser is π ∝ μ exp(u/τ).
    u = np.array([1.0, 0.0, -0.5])
    game = make_game("transitive", ["a", "b", "c"], _bt_matrix(u), reference=MU.tolist())
    run = run_tabular(OSP(tau=0.5), game, iterations=1, inner_steps=200)
    np.testing.assert_allclose(run.final_policy[0], _normalised(MU * np.exp(u / 0.5)), atol=1e-5)


def _bt_matrix(u):
    u = np.asarray(u)
    return 1 / (1 + np.exp(-(u[:, None] - u[None, :])))


def test_bt_rlhf_on_a_transitive_game_is_the_bt_optimum():
    u = np.array([1.0, 0.0, -0.5])
    game = make_game("transitive", ["a", "b", "c"], _bt_matrix(u), reference=MU.tolist())
    np.testing.assert_allclose(bradley_terry_scores(game.preference)[0], u - u.mean(), atol=1e-6)
    beta = 0.5
    np.testing.assert_allclose(
        bt_rlhf_policy(game, beta)[0], _normalised(MU * np.exp(u / beta)), atol=1e-6
    )


def test_nash_methods_reach_the_equilibrium_and_bt_rlhf_does_not_where_bt_misleads():
    config = NashLabConfig()
    for game in builtin_games():
        for cls in (NashMD, INPO, SPO, DNO):
            run = run_tabular(cls(tau=config.tau, eta=config.eta), game, config.iterations)
            assert run.exploitability[-1] < 0.05, (game.name, cls.name, run.exploitability[-1])
            assert run.exploitability[-1] < run.exploitability[0] / 4
        bt = exploitability(game.preference, bt_rlhf_policy(game, config.tau))
        if game.name == "rock-paper-scissors":
            assert bt == pytest.approx(0.0, abs=1e-9)
        else:
            assert bt >= 0.05, (game.name, bt)


def test_loss_mode_follows_the_closed_form_over_iterations():
    game = rock_paper_scissors()
    exact = run_tabular(INPO(eta=1.0), game, iterations=5)
    fitted = run_tabular(INPO(eta=1.0), game, iterations=5, exact=False, inner_steps=100)
    np.testing.assert_allclose(fitted.exploitability, exact.exploitability, atol=1e-6)


def _write(tmp_path, data, name="game.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"responses": ["a", "b"]}, "missing field 'P'"),
        ({"responses": ["a", "b"], "P": [[0.5, 0.6]]}, "'P' must be an 2×2 matrix"),
        ({"responses": ["a", "b"], "P": [[0.5, 0.7], [0.4, 0.5]]}, "'P' must satisfy P + Pᵀ = 1"),
        ({"responses": ["a", "b"], "P": [[0.4, 0.7], [0.3, 0.6]]}, "½ on its diagonal"),
        ({"responses": ["a", "b"], "P": [[0.5, 1.2], [-0.2, 0.5]]}, "probabilities in [0, 1]"),
        ({"responses": ["a", "a"], "P": [[0.5, 0.5], [0.5, 0.5]]}, "'responses' must be distinct"),
        (
            {"responses": ["a", "b"], "P": [[0.5, 0.5], [0.5, 0.5]], "reference": [0.5, 0.6]},
            "'reference' probabilities must sum to 1",
        ),
        (
            {"responses": ["a", "b"], "P": [[0.5, 0.5], [0.5, 0.5]], "reference": [1.0]},
            "'reference' must be a list of 2 probabilities",
        ),
        (
            {"responses": ["a", "b"], "P": [[0.5, 0.5], [0.5, 0.5]], "ref": [0.5, 0.5]},
            "unknown field(s) ['ref']",
        ),
    ],
)
def test_game_file_errors_name_the_field(tmp_path, data, message):
    path = _write(tmp_path, data)
    with pytest.raises(GameError) as error:
        load_game(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_cli_reports_a_bad_game_file_in_one_line(tmp_path):
    path = _write(tmp_path, {"responses": ["a", "b"], "P": [[0.5, 0.7], [0.4, 0.5]]})
    result = CliRunner().invoke(
        app, ["lab", "nash", "--out", str(tmp_path / "o"), "--preferences", str(path)]
    )
    assert result.exit_code == 2
    first = result.output.splitlines()[0]
    assert first.startswith("prefloop: error: ") and "P + Pᵀ = 1" in first
    assert "Traceback" not in result.output


def test_lab_on_a_game_file_writes_the_schema(tmp_path):
    path = _write(
        tmp_path, {"responses": ["x", "y", "z"], "P": P3.tolist(), "reference": MU.tolist()}
    )
    config = NashLabConfig(
        iterations=10, osp_inner_steps=20, sweep_etas=(1.0,), sweep_iterations=10
    )
    data = run_lab(tmp_path / "out", preferences=path, config=config)
    written = json.loads((tmp_path / "out" / "nash.json").read_text())
    assert written == json.loads(json.dumps(data))
    assert "games" not in written
    np.testing.assert_allclose(written["minimax_winner"], minimax_winner(P3[None])[0], atol=1e-9)
    assert set(written["methods"]) == {"nash-md", "inpo", "spo", "dno", "osp", "bt-rlhf"}
    for name, entry in written["methods"].items():
        assert len(entry["exploitability"]) == (1 if name == "bt-rlhf" else 11)
        assert entry["final_exploitability"] == entry["exploitability"][-1]
        assert len(entry["final_policy"]) == 3 and sum(entry["final_policy"]) == pytest.approx(1)
    assert (tmp_path / "out" / "nash_exploitability.png").stat().st_size > 0
    assert "| nash-md |" in (tmp_path / "out" / "nash.md").read_text()
