"""``prefloop``: the command line; each command parses options and calls the library."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from prefloop.errors import USER_ERRORS, TrainingDivergedError


class _ReportingGroup(TyperGroup):
    """The root command: a user's mistake is a short message and exit 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as error:
            if _debug_requested(ctx):
                raise
            typer.echo(f"prefloop: error: {error}", err=True)
            typer.echo("(run with --debug for the traceback)", err=True)
            raise typer.Exit(1 if isinstance(error, TrainingDivergedError) else 2) from None


class _MethodGroup(TyperGroup):
    """``prefloop train METHOD``: a subcommand per method, built when it is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from prefloop.cli_train import method_names

        return method_names()

    def get_command(self, ctx: click.Context, name: str):
        from prefloop.cli_train import click_command

        return click_command(name, console)


app = typer.Typer(
    cls=_ReportingGroup,
    help="Turn human and AI feedback into better models, measured on ground truth.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
lab_app = typer.Typer(help="Experiments on the ground-truth lab.", no_args_is_help=True)
app.add_typer(lab_app, name="lab")
train_app = typer.Typer(
    cls=_MethodGroup,
    no_args_is_help=True,
    help="Train a policy or a reward model with one method; `prefloop train METHOD --help` "
    "lists its settings.",
)
app.add_typer(train_app, name="train")
# lines are never wrapped: a path printed in a log stays whole (a terminal still wraps them)
console = Console(soft_wrap=True)

Out = Annotated[Path, typer.Option("--out", help="Output directory (created if missing).")]
Seed = Annotated[int, typer.Option(help="Random seed; the same seed gives the same numbers.")]


def _positive(value: float) -> float:
    if not value > 0:  # also refuses nan
        raise typer.BadParameter(f"must be a number > 0, got {value}")
    return value


Beta = Annotated[float, typer.Option(help="Beta of the implicit reward (> 0).", callback=_positive)]


def _debug_requested(ctx: click.Context) -> bool:
    return bool(ctx.meta.get("prefloop_debug")) or os.environ.get("PREFLOOP_DEBUG") == "1"


def _quiet_libraries() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _comparisons(data: Path):
    from prefloop.data.io import load_records
    from prefloop.data.records import Comparison

    records = load_records(data)
    if not records or not all(isinstance(r, Comparison) for r in records):
        raise typer.BadParameter(f"{data} must hold pairwise comparisons (prompt/chosen/rejected)")
    return records


@app.callback()
def main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option(help="Show the traceback of an error.")] = False,
) -> None:
    ctx.meta["prefloop_debug"] = debug
    _quiet_libraries()


@app.command()
def demo(
    out: Out = Path("demo-out"),
    seed: Seed = 0,
    fast: Annotated[bool, typer.Option(help="Reduced settings (about half the time).")] = False,
) -> None:
    """Run the whole loop on the review world: SFT → labels → reward model → DPO → report.

    Each run starts afresh in --out (an earlier demo there is replaced).
    """
    from prefloop.lab.demo import DemoConfig, run_demo

    config = DemoConfig.fast(seed) if fast else DemoConfig(seed=seed)
    run_demo(config, out, console)
    console.print(
        f"report: {out / 'report.md'}  ({out / 'report.json'}, {out / 'gold_by_aspect.png'})"
    )


@app.command(
    "train-rm",
    help="Train a Bradley–Terry reward model (the same as `train rm`).",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
def train_rm(ctx: typer.Context) -> None:
    from prefloop.cli_train import click_command

    command = click_command("rm", console)
    command.main(ctx.args, prog_name="prefloop train-rm", standalone_mode=False)


@app.command(
    "train-online",
    help="Sample from a policy, judge, update: online/iterative DPO, RAFT, RLOO, GRPO, "
    "REINFORCE++, PPO. `prefloop train-online --method NAME --help` lists its options.",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
def train_online(
    ctx: typer.Context,
    method: Annotated[str | None, typer.Option(help="The online method.")] = None,
) -> None:
    from prefloop.cli_online import dispatch

    dispatch(ctx, method, console)


@app.command("eval")
def evaluate(
    model: Annotated[Path, typer.Argument(help="Policy or reward model directory.")],
    data: Annotated[Path, typer.Argument(help="Comparisons: JSONL, Parquet or HF dataset dir.")],
    out: Out = Path("eval-out"),
    reference: Annotated[
        Path | None, typer.Option(help="Reference policy (for KL and implicit reward).")
    ] = None,
    beta: Beta = 0.1,
    world: Annotated[
        str | None, typer.Option(help="Score with this lab world's gold reward (e.g. reviews).")
    ] = None,
    samples: Annotated[int, typer.Option(help="Samples per prompt for policy metrics.", min=1)] = 4,
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
    beta: Beta = 0.1,
    world: Annotated[str, typer.Option(help="World whose evaluation suite to run.")] = "reviews",
    prompts: Annotated[int, typer.Option(help="Held-out prompts of the suite.", min=1)] = 200,
    seed: Seed = 0,
) -> None:
    """Reward-model suite: accuracy in and out of distribution, one-to-many, consistency, ECE."""
    from prefloop.eval.report import write_json, write_run_config
    from prefloop.eval.rm_suite import evaluate_model_directory
    from prefloop.worlds import get_rm_suite

    write_run_config(out, {"command": "eval-rm", "model": str(model), "data": str(data),
                           "reference": str(reference) if reference else None, "beta": beta,
                           "world": world, "prompts": prompts, "seed": seed})  # fmt: skip
    comparisons = _comparisons(data) if data else ()
    suite = get_rm_suite(world, prompts, seed)
    report = evaluate_model_directory(model, suite, world, reference, beta, comparisons)
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
    allow_private_webhooks: Annotated[
        bool, typer.Option(help="Let webhooks go to loopback, private and link-local addresses.")
    ] = False,
) -> None:
    """Run the feedback collection service (HTTP API + annotation page)."""
    from prefloop.serve.cli import serve_command

    serve_command(
        db=db,
        host=host,
        port=port,
        init=init,
        workers=workers,
        allow_private_webhooks=allow_private_webhooks,
    )


FeedbackDb = Annotated[
    str | None,
    typer.Option(help="Database URL of the service (default: sqlite:///prefloop-feedback.db)."),
]
ServerUrl = Annotated[
    str | None, typer.Option(help="A running server (http://host:port) instead of --db.")
]
ServerToken = Annotated[
    str | None, typer.Option(envvar="PREFLOOP_TOKEN", help="Project admin token for --url.")
]


@app.command("feedback-import")
def feedback_import(
    path: Annotated[
        Path, typer.Argument(help="Items: records (JSONL/Parquet/HF dir) or API JSONL.")
    ],
    project: Annotated[int, typer.Option(help="Project id.")],
    db: FeedbackDb = None,
    url: ServerUrl = None,
    token: ServerToken = None,
) -> None:
    """Add items to judge to a project of the feedback service."""
    from prefloop.serve.cli import import_command

    console.print(f"{import_command(str(path), project, db, url=url, token=token)} new items")


@app.command("feedback-export")
def feedback_export(
    project: Annotated[int, typer.Option(help="Project id.")],
    out: Out = Path("feedback.jsonl"),
    db: FeedbackDb = None,
    form: Annotated[
        str, typer.Option(help="prefloop, trl-explicit, trl-implicit or trl-kto.")
    ] = "prefloop",
    pairs: Annotated[bool, typer.Option(help="Expand rankings into pairs.")] = False,
    url: ServerUrl = None,
    token: ServerToken = None,
) -> None:
    """Export a project's judgments as training records with provenance columns."""
    from prefloop.serve.cli import export_command

    count = export_command(project, str(out), db, form, pairs, url=url, token=token)
    console.print(f"{count} rows written to {out}")


Seeds = Annotated[
    int | None,
    typer.Option(min=1, help="Run seeds seed, seed+1, ...; default 3, or 1 with --fast."),
]


def _lab_command(name: str, module: str, function: str, help_text: str) -> None:
    """Register ``prefloop lab NAME``; its implementation is imported only when it runs."""

    @lab_app.command(name, help=help_text)
    def command(
        out: Out = Path(f"lab-{name}"), fast: bool = False, seed: Seed = 0, seeds: Seeds = None
    ) -> None:
        getattr(importlib.import_module(module), function)(
            out=out, fast=fast, seed=seed, seeds=seeds, console=console
        )


for _name, _module, _help in (
    ("objectives", "prefloop.lab.objectives", "Train every objective on one world and compare."),
    ("overoptimization", "prefloop.lab.overoptimization", "Best-of-n against proxy reward models."),
    ("reward-models", "prefloop.lab.reward_models", "Compare reward models, in and out of domain."),
    ("teachers", "prefloop.lab.teachers", "Imperfect teachers vs the BT reward model."),
    ("online", "prefloop.lab.online", "Online vs offline methods at equal feedback labels."),
    (
        "verifiable",
        "prefloop.lab.verifiable",
        "GRPO, Dr. GRPO, DAPO, RLOO, REINFORCE++ on a verifiable-reward world.",
    ),
    (
        "nash-text",
        "prefloop.lab.nash_text",
        "Nash-MD, SPO, INPO, DNO, OSP vs DPO and RM methods on text with annotator groups "
        "whose pooled preference is intransitive.",
    ),
):
    _lab_command(_name, _module, "run_lab", _help)


@lab_app.command("nash", help="Nash methods vs BT-RLHF on exact tabular preference games.")
def lab_nash(
    out: Out = Path("lab-nash"),
    preferences: Annotated[
        Path | None, typer.Option(help="JSON game {responses, P, reference}; default: built-ins.")
    ] = None,
) -> None:
    from prefloop.lab.nash import run_lab

    run_lab(out=out, preferences=preferences, console=console)


if __name__ == "__main__":
    app()
