"""``prefloop``: the command line; each command parses options and calls the library."""

from __future__ import annotations

import importlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    help="Turn human and AI feedback into better models, measured on ground truth.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
lab_app = typer.Typer(help="Experiments on the ground-truth lab.", no_args_is_help=True)
app.add_typer(lab_app, name="lab")
console = Console()

Out = Annotated[Path, typer.Option("--out", help="Output directory (created if missing).")]
Seed = Annotated[int, typer.Option(help="Random seed; the same seed gives the same numbers.")]
Epochs = Annotated[float, typer.Option(help="Passes over the training data.")]
LearningRate = Annotated[
    float, typer.Option("--lr", help="Peak learning rate (AdamW, linear decay).")
]
BatchSize = Annotated[int, typer.Option(help="Examples per optimisation step.")]
Resume = Annotated[bool, typer.Option(help="Continue from the last checkpoint in --out.")]
CheckpointEvery = Annotated[int, typer.Option(help="Steps between checkpoints (0: final only).")]


def _quiet_libraries() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _train_config(epochs: float, lr: float, batch_size: int, seed: int, checkpoint_every: int):
    from prefloop.train.engine import TrainConfig

    return TrainConfig(
        learning_rate=lr,
        batch_size=batch_size,
        epochs=epochs,
        seed=seed,
        checkpoint_every=checkpoint_every,
    )


def _comparisons(data: Path):
    from prefloop.data.io import load_records
    from prefloop.data.records import Comparison

    records = load_records(data)
    if not records or not all(isinstance(r, Comparison) for r in records):
        raise typer.BadParameter(f"{data} must hold pairwise comparisons (prompt/chosen/rejected)")
    return records


def _parse_options(options: list[str]) -> dict:
    parsed = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--option expects KEY=VALUE, got {item!r}")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


@app.callback()
def main() -> None:
    _quiet_libraries()


@app.command()
def demo(
    out: Out = Path("demo-out"),
    seed: Seed = 0,
    fast: Annotated[bool, typer.Option(help="Reduced settings (about half the time).")] = False,
) -> None:
    """Run the whole loop on the review world: SFT → labels → reward model → DPO → report."""
    from prefloop.lab.demo import DemoConfig, run_demo

    config = DemoConfig.fast(seed) if fast else DemoConfig(seed=seed)
    run_demo(config, out, console)
    console.print(
        f"report: {out / 'report.md'}  ({out / 'report.json'}, {out / 'gold_by_aspect.png'})"
    )


@app.command("train-rm")
def train_rm(
    model: Annotated[Path, typer.Argument(help="HF causal LM or reward model directory.")],
    data: Annotated[Path, typer.Argument(help="Comparisons: JSONL, Parquet or HF dataset dir.")],
    out: Out = Path("reward-model"),
    seed: Seed = 0,
    epochs: Epochs = 1.0,
    lr: LearningRate = 1e-5,
    batch_size: BatchSize = 16,
    use_margin: Annotated[bool, typer.Option(help="Use each pair's margin.")] = False,
    label_smoothing: Annotated[float, typer.Option(help="Assumed label flip rate.")] = 0.0,
    resume: Resume = False,
    checkpoint_every: CheckpointEvery = 0,
) -> None:
    """Train a Bradley–Terry reward model on pairwise comparisons."""
    from prefloop.eval.report import write_run_config
    from prefloop.models.reward import RewardModel
    from prefloop.train.reward_model import train_reward_model

    config = _train_config(epochs, lr, batch_size, seed, checkpoint_every)
    write_run_config(out, {"command": "train-rm", "model": str(model), "data": str(data),
                           "use_margin": use_margin, "label_smoothing": label_smoothing,
                           "train": asdict(config)})  # fmt: skip
    reward_model = RewardModel.from_pretrained(model, seed=seed)
    result = train_reward_model(
        reward_model, _comparisons(data), config, out, use_margin, label_smoothing, resume
    )
    reward_model.save_pretrained(out)
    console.print(
        f"reward model saved to {out} ({result.steps} steps, loss {result.final_loss:.4f})"
    )


@app.command()
def train(
    model: Annotated[Path, typer.Argument(help="HF causal LM directory (policy and reference).")],
    data: Annotated[
        Path, typer.Argument(help="Feedback records (comparisons; ratings for curry-dpo; ...).")
    ],
    objective: Annotated[
        str, typer.Option(help="Objective, e.g. dpo, ipo, simpo, kto, curry-dpo, c3po.")
    ] = "dpo",
    beta: Annotated[
        float | None, typer.Option(help="KL strength (objective default if unset).")
    ] = None,
    option: Annotated[
        list[str], typer.Option("--option", help="Objective option KEY=VALUE (repeatable).")
    ] = [],  # noqa: B006
    out: Out = Path("policy"),
    seed: Seed = 0,
    epochs: Epochs = 1.0,
    lr: LearningRate = 5e-7,
    batch_size: BatchSize = 16,
    use_margin: Annotated[bool, typer.Option(help="Use each pair's margin.")] = False,
    resume: Resume = False,
    checkpoint_every: CheckpointEvery = 0,
) -> None:
    """Optimise a policy on feedback with a direct-alignment objective or recipe."""
    from prefloop.algorithms.registry import (
        RecordKindError,
        train_objective,
        trainable_objectives,
    )
    from prefloop.data.io import load_records
    from prefloop.eval.report import write_run_config
    from prefloop.models.policy import Policy

    if objective not in trainable_objectives():
        raise typer.BadParameter(
            f"unknown objective {objective!r}; choose from {trainable_objectives()}"
        )
    config = _train_config(epochs, lr, batch_size, seed, checkpoint_every)
    options = _parse_options(option)
    write_run_config(out, {"command": "train", "model": str(model), "data": str(data),
                           "objective": objective, "beta": beta, "options": options,
                           "use_margin": use_margin, "train": asdict(config)})  # fmt: skip
    policy = Policy.from_pretrained(model)
    records = load_records(data)
    try:
        result = train_objective(
            policy, records, config, out, objective, beta, options, use_margin, resume
        )
    except RecordKindError as error:
        raise typer.BadParameter(str(error)) from error
    policy.save_pretrained(out)
    console.print(f"policy saved to {out} ({result.steps} steps, loss {result.final_loss:.4f})")


@app.command("eval")
def evaluate(
    model: Annotated[Path, typer.Argument(help="Policy or reward model directory.")],
    data: Annotated[Path, typer.Argument(help="Comparisons: JSONL, Parquet or HF dataset dir.")],
    out: Out = Path("eval-out"),
    reference: Annotated[
        Path | None, typer.Option(help="Reference policy (for KL and implicit reward).")
    ] = None,
    beta: Annotated[float, typer.Option(help="Beta of the implicit reward.")] = 0.1,
    world: Annotated[
        str | None, typer.Option(help="Score with this lab world's gold reward (e.g. reviews).")
    ] = None,
    samples: Annotated[int, typer.Option(help="Samples per prompt for policy metrics.")] = 4,
    seed: Seed = 0,
) -> None:
    """Evaluate a reward model or a policy on a dataset of comparisons; writes report.json."""
    from prefloop.eval.cli_eval import evaluate_model
    from prefloop.eval.report import write_json, write_run_config

    write_run_config(out, {"command": "eval", "model": str(model), "data": str(data),
                           "reference": str(reference) if reference else None, "beta": beta,
                           "world": world, "samples": samples, "seed": seed})  # fmt: skip
    report = evaluate_model(model, _comparisons(data), reference, beta, world, samples, seed)
    write_json(out / "report.json", report)
    console.print_json(data=report)


@app.command("eval-rm")
def eval_rm(
    model: Annotated[Path, typer.Argument(help="Reward model, or policy (with --reference).")],
    data: Annotated[
        Path | None, typer.Option(help="Also score these comparisons (accuracy, ECE).")
    ] = None,
    out: Out = Path("eval-rm-out"),
    reference: Annotated[
        Path | None, typer.Option(help="Reference policy: evaluate the DPO implicit reward.")
    ] = None,
    beta: Annotated[float, typer.Option(help="Beta of the implicit reward.")] = 0.1,
    prompts: Annotated[int, typer.Option(help="Held-out prompts of the review-world suite.")] = 200,
    seed: Seed = 0,
) -> None:
    """Reward-model suite: accuracy in and out of distribution, one-to-many, consistency, ECE."""
    from prefloop.eval.report import write_json, write_run_config
    from prefloop.eval.rm_suite import evaluate_model_directory

    write_run_config(out, {"command": "eval-rm", "model": str(model), "data": str(data),
                           "reference": str(reference) if reference else None, "beta": beta,
                           "prompts": prompts, "seed": seed})  # fmt: skip
    comparisons = _comparisons(data) if data else ()
    report = evaluate_model_directory(model, reference, beta, comparisons, prompts, seed)
    write_json(out / "report.json", report)
    console.print_json(data=report)


@app.command()
def serve(
    db: Annotated[str, typer.Option(help="sqlite:///file.db (default) or postgresql://...")] = (
        "sqlite:///prefloop-feedback.db"
    ),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    init: Annotated[
        bool, typer.Option(help="Create the database and print the admin token once.")
    ] = False,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes on the port (>1: PostgreSQL only).")
    ] = 1,
) -> None:
    """Run the feedback collection service (HTTP API + annotation page)."""
    from prefloop.serve.cli import serve_command

    serve_command(db=db, host=host, port=port, init=init, workers=workers)


@app.command("feedback-import")
def feedback_import(
    path: Annotated[
        Path, typer.Argument(help="Items: records (JSONL/Parquet/HF dir) or API JSONL.")
    ],
    project: Annotated[int, typer.Option(help="Project id.")],
    db: Annotated[str, typer.Option(help="Database URL of the service.")] = (
        "sqlite:///prefloop-feedback.db"
    ),
) -> None:
    """Add items to judge to a project of the feedback service."""
    from prefloop.serve.cli import import_command

    console.print(f"{import_command(str(path), project, db)} new items")


@app.command("feedback-export")
def feedback_export(
    project: Annotated[int, typer.Option(help="Project id.")],
    out: Out = Path("feedback.jsonl"),
    db: Annotated[str, typer.Option(help="Database URL of the service.")] = (
        "sqlite:///prefloop-feedback.db"
    ),
    form: Annotated[
        str, typer.Option(help="prefloop, trl-explicit, trl-implicit or trl-kto.")
    ] = "prefloop",
    pairs: Annotated[bool, typer.Option(help="Expand rankings into pairs.")] = False,
) -> None:
    """Export a project's judgments as training records with provenance columns."""
    from prefloop.serve.cli import export_command

    console.print(f"{export_command(project, str(out), db, form, pairs)} rows written to {out}")


def _lab_command(name: str, module: str, function: str, help_text: str) -> None:
    """Register ``prefloop lab NAME``; its implementation is imported only when it runs."""

    @lab_app.command(name, help=help_text)
    def command(out: Out = Path(f"lab-{name}"), fast: bool = False, seed: Seed = 0) -> None:
        getattr(importlib.import_module(module), function)(
            out=out, fast=fast, seed=seed, console=console
        )


for _name, _module, _help in (
    ("objectives", "prefloop.lab.objectives", "Train every objective on one world and compare."),
    ("overoptimization", "prefloop.lab.overoptimization", "Best-of-n against proxy reward models."),
    ("reward-models", "prefloop.lab.reward_models", "Compare reward models, in and out of domain."),
    ("teachers", "prefloop.lab.teachers", "Imperfect teachers vs the BT reward model."),
):
    _lab_command(_name, _module, "run_lab", _help)


if __name__ == "__main__":
    app()
