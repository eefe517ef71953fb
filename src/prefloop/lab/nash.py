"""``prefloop lab nash``: the Nash methods and BT-RLHF on exact tabular preference games.

Every method self-plays the τ-regularised game from the game's start policy; every quantity
(exploitability, regularised gap, KL) is computed exactly. Without ``--preferences`` it runs the
built-in games; with a JSON game file it runs that one. Writes ``nash.json``, ``nash.md``,
``nash_exploitability.png`` and ``run_config.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from prefloop.algorithms.nash import (
    DNO,
    INPO,
    OSP,
    SPO,
    NashMD,
    bradley_terry_scores,
    bt_rlhf_policy,
    run_tabular,
)
from prefloop.eval.games import (
    exploitability,
    kl_divergence,
    minimax_winner,
    regularized_equilibrium,
    regularized_gap,
)
from prefloop.eval.report import plt, write_json, write_run_config
from prefloop.worlds.games import PreferenceGame, builtin_games, load_game

THRESHOLD = 0.05


@dataclass
class NashLabConfig:
    """Settings shared by every method and game (one τ, one step size)."""

    tau: float = 0.05  # KL-to-reference strength of the game; bt-rlhf's β
    eta: float = 1.0  # mirror-descent step size of nash-md, inpo, spo, dno
    iterations: int = 300
    osp_inner_steps: int = 100  # L-BFGS iterations per OSP step (OSP has no closed form)
    sweep_etas: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)
    sweep_iterations: int = 1000


def _table(table: np.ndarray) -> list:
    """A one-prompt policy as a flat list; otherwise one list per prompt."""
    return table[0].tolist() if table.shape[0] == 1 else table.tolist()


def _method_entry(run, settings: dict) -> dict:
    return {
        "exploitability": run.exploitability,
        **run.summary(),
        "average_iterate_exploitability": None,
        "final_policy": _table(run.final_policy),
        "settings": settings,
    }


def run_game(game: PreferenceGame, config: NashLabConfig) -> dict:
    """Every method on one game: the ``nash.json`` entry of that game."""
    p, mu, tau = game.preference, game.reference, config.tau
    methods = {}
    for cls in (NashMD, INPO, SPO, DNO):
        method = cls(tau=tau, eta=config.eta)
        run = run_tabular(method, game, config.iterations)
        methods[method.name] = _method_entry(run, asdict(method))
        methods[method.name]["average_iterate_exploitability"] = exploitability(
            p, run.average_policy
        )
    osp = OSP(tau=tau)
    run = run_tabular(osp, game, config.iterations, inner_steps=config.osp_inner_steps)
    methods["osp"] = _method_entry(
        run,
        {"tau": tau, "judge": "the game's preference", "lbfgs_iterations": config.osp_inner_steps},
    )
    methods["osp"]["average_iterate_exploitability"] = exploitability(p, run.average_policy)
    bt = bt_rlhf_policy(game, tau)
    methods["bt-rlhf"] = {
        "exploitability": [exploitability(p, bt)],
        "final_exploitability": exploitability(p, bt),
        "final_regularized_gap": regularized_gap(p, bt, mu, tau),
        "final_kl_to_reference": kl_divergence(bt, mu),
        "final_policy": _table(bt),
        "settings": {"beta": tau},
    }
    winner = minimax_winner(p)
    equilibrium = regularized_equilibrium(p, mu, tau)
    scores = bradley_terry_scores(p)
    return {
        "description": game.description,
        "responses": list(game.responses),
        "minimax_winner": _table(winner),
        "minimax_winner_exploitability": exploitability(p, winner),
        "bt_scores": _table(scores),
        "bt_winner_is_minimax_winner": bool(
            (winner[np.arange(game.prompts), scores.argmax(axis=1)] > 1 - 1e-6).all()
        ),
        "regularized_equilibrium": _table(equilibrium),
        "regularized_equilibrium_exploitability": exploitability(p, equilibrium),
        "reference": _table(mu),
        "start": _table(game.start),
        "methods": methods,
        "step_size_sweep": _sweep(game, config),
        "unregularized": _unregularized(game, config),
    }


def _sweep(game: PreferenceGame, config: NashLabConfig) -> dict:
    """Final exploitability of each closed-form method at each step size."""
    return {
        cls.name: {
            str(eta): run_tabular(
                cls(tau=config.tau, eta=eta), game, config.sweep_iterations
            ).exploitability[-1]
            for eta in config.sweep_etas
        }
        for cls in (NashMD, INPO, SPO, DNO)
    }


def _unregularized(game: PreferenceGame, config: NashLabConfig) -> dict:
    """SPO and DNO as their papers state them (τ = 0): last and average iterate."""
    entries = {}
    for cls in (SPO, DNO):
        run = run_tabular(cls(tau=0.0, eta=config.eta), game, config.sweep_iterations)
        entries[cls.name] = {
            "iterations": config.sweep_iterations,
            "eta": config.eta,
            "last_iterate_exploitability": run.exploitability[-1],
            "average_iterate_exploitability": exploitability(game.preference, run.average_policy),
        }
    return entries


def plot_exploitability(results: dict[str, dict], path: Path) -> Path:
    """Exploitability per iteration, one panel per game (log scale; bt-rlhf dashed)."""
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, (name, game) in zip(axes[0], results.items()):
        for method, entry in game["methods"].items():
            curve = np.maximum(entry["exploitability"], 1e-8)
            if method == "bt-rlhf":
                ax.axhline(curve[0], linestyle="--", color="black", label="bt-rlhf (β = τ)")
            else:
                ax.plot(curve, label=method)
        ax.axhline(THRESHOLD, linestyle=":", color="grey", label=f"{THRESHOLD}")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("exploitability max_y P(y ≻ π) − ½")
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _markdown(results: dict[str, dict], config: NashLabConfig) -> str:
    lines = [
        "# Nash methods on exact tabular preference games",
        "",
        f"τ = {config.tau} (bt-rlhf β = τ), step size η = {config.eta}, "
        f"{config.iterations} iterations; exploitability = max_y P(y ≻ π) − ½.",
        "",
    ]
    for name, game in results.items():
        lines += [
            f"## {name}",
            "",
            game["description"],
            "",
            f"minimax winner {np.round(game['minimax_winner'], 4).tolist()}; "
            f"π*_τ exploitability {game['regularized_equilibrium_exploitability']:.4f}; "
            f"BT winner is the minimax winner: {game['bt_winner_is_minimax_winner']}",
            "",
            "| method | final exploitability | < 0.05 | τ-regularised gap | KL to μ |",
            "|---|---|---|---|---|",
        ]
        for method, e in game["methods"].items():
            x = e["final_exploitability"]
            lines.append(
                f"| {method} | {x:.4f} | {'yes' if x < THRESHOLD else 'no'} | "
                f"{e['final_regularized_gap']:.2e} | {e['final_kl_to_reference']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


def run_lab(
    out: Path,
    preferences: Path | None = None,
    config: NashLabConfig | None = None,
    console: Console | None = None,
) -> dict:
    """Run every method on the built-in games (or the game in ``preferences``) into ``out``."""
    config, console, out = config or NashLabConfig(), console or Console(), Path(out)
    games = [load_game(preferences)] if preferences else builtin_games()
    write_run_config(out, {**asdict(config), "preferences": str(preferences or "")})
    results = {}
    for game in games:
        console.rule(game.name)
        results[game.name] = run_game(game, config)
        for method, entry in results[game.name]["methods"].items():
            console.print(f"{method:>8}: exploitability {entry['final_exploitability']:.4f}")
    data = results[games[0].name] if preferences else {"games": results}
    write_json(out / "nash.json", data)
    (out / "nash.md").write_text(_markdown(results, config) + "\n")
    plot_exploitability(results, out / "nash_exploitability.png")
    return data
