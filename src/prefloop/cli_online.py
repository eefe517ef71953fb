"""``prefloop train-online --method NAME``: sample from the policy, judge, update.

The method's flags come from its settings dataclass (:mod:`prefloop.online.methods`), the
training flags from :class:`TrainConfig`; exactly one judge is chosen with the Judge flags.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from accelerate import PartialState
from rich.console import Console

from prefloop.cli_train import _group, _parameter, _take
from prefloop.online.methods import LEARNING_RATES, ONLINE_METHODS, OnlineRun, train_online
from prefloop.train.config import ConfigError, coerce, field_types
from prefloop.train.engine import TrainConfig

RUN_FLAGS = ("model", "prompts", "out", "resume", "overwrite")
JUDGE_FLAGS = ("world", "annotator", "annotator_temperature", "reward_model", "combine",
               "preference_model", "reward_function", "service_url", "service_token",
               "service_project", "value_model")  # fmt: skip
#: The flags that each choose a judge (exactly one per run).
JUDGE_KINDS = ("world", "reward_model", "preference_model", "reward_function", "service_url")
#: Training defaults of online runs (an online source is endless: the run is max_steps long).
TRAIN_DEFAULTS = {"max_steps": 50, "batch_size": 64, "warmup_ratio": 0.0, "log_every": 1}


def _option(name: str, annotation: Any, default: Any, help: str, panel: str = "Judge"):
    flag = "--" + name.replace("_", "-")
    option = typer.Option(flag, help=help, rich_help_panel=panel)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, option])  # fmt: skip


def _judge_parameters() -> list[inspect.Parameter]:
    return [
        _option("world", str | None, None, "Score with this lab world's gold reward (e.g. "
                "reviews, arithmetic)."),
        _option("annotator", bool, False, "With --world: a simulated annotator compares "
                "samples (pairwise, noisy) instead of the exact gold score."),
        _option("annotator_temperature", float, 0.5, "The simulated annotator's temperature."),
        _option("reward_model", list[Path] | None, None, "A trained reward model directory; "
                "give several for an ensemble."),
        _option("combine", str, "mean", "How an ensemble combines: mean, wco or uwo."),
        _option("preference_model", Path | None, None, "A trained pairwise preference model."),
        _option("reward_function", list[str] | None, None, "A Python reward function "
                "module:function[=weight]; repeat to sum several."),
        _option("service_url", str | None, None, "A running `prefloop serve`: people judge."),
        _option("service_token", str | None, None, "Project-admin token for --service-url."),
        _option("service_project", int | None, None, "Project id (task pairwise) to post to."),
        _option("value_model", Path | None, None, "ppo: the critic's starting model "
                "(default: the policy's).", "Method"),
    ]  # fmt: skip


def build_judge(values: dict[str, Any], aspects: bool = False):
    """The one judge the flags name; a ConfigError when none or several are named.

    ``aspects``: the method needs per-aspect scores (DPA): a world's gold aspects, or a
    multi-objective reward model."""
    from prefloop.online import judges

    given = [name for name in JUDGE_KINDS if values[name]]
    if len(given) != 1:
        raise ConfigError("choose exactly one judge: --world, --reward-model, "
                          "--preference-model, --reward-function or --service-url"
                          + (f" (got {', '.join('--' + g.replace('_', '-') for g in given)})"
                             if given else ""))  # fmt: skip
    kind = given[0]
    if kind == "world":
        from prefloop.worlds import get_world

        world = get_world(values["world"])
        if aspects:
            return judges.GoldAspectsJudge(world)
        if values["annotator"]:
            return judges.AnnotatorJudge(world, values["annotator_temperature"])
        return judges.GoldJudge(world)
    if kind == "reward_model":
        from prefloop.models.ensemble import RewardEnsemble
        from prefloop.models.multi_objective import MultiObjectiveRewardModel
        from prefloop.models.reward import RewardModel

        if aspects:
            return judges.MultiObjectiveJudge(
                MultiObjectiveRewardModel.from_pretrained(values["reward_model"][0]))  # fmt: skip
        models = [RewardModel.from_pretrained(path) for path in values["reward_model"]]
        model = models[0] if len(models) == 1 else RewardEnsemble(models)
        return judges.RewardModelJudge(model, values["combine"])
    if kind == "preference_model":
        from prefloop.models.preference_model import PairwisePreferenceModel

        return judges.PreferenceModelJudge(
            PairwisePreferenceModel.from_pretrained(values["preference_model"]))  # fmt: skip
    if kind == "reward_function":
        from prefloop.online.reward_functions import FunctionJudge, load_reward_function

        return FunctionJudge([load_reward_function(s) for s in values["reward_function"]])
    from prefloop.online.service_judge import ServiceJudge
    from prefloop.serve.client import Client

    if not values["service_token"] or values["service_project"] is None:
        raise ConfigError("--service-url needs --service-token and --service-project")
    client = Client(values["service_url"], values["service_token"])
    return ServiceJudge(client, values["service_project"])


def _no_judge(name: str, values: dict[str, Any]) -> None:
    """A self-judging method takes no judge; naming one is a mistake, not a choice."""
    given = [name for name in JUDGE_KINDS if values[name]]
    if given:
        raise ConfigError(f"method {name!r} judges its own samples with the policy; drop "
                          + ", ".join("--" + g.replace("_", "-") for g in given))  # fmt: skip


def _method_parameters(cls: type) -> list[inspect.Parameter]:
    hints = field_types(cls)
    params = []
    for f in fields(cls):
        listed = typing.get_origin(hints[f.name]) is tuple  # a tuple setting: a repeated flag
        annotation = list[str] if listed else hints[f.name]
        default = list(f.default) if listed else f.default
        params.append(_parameter(f, annotation, default, "", "Method"))
    return params


def online_command(name: str, console: Console):
    """The command of online method ``name``."""
    cls = ONLINE_METHODS[name]
    run_params = [
        inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[
            Path, typer.Argument(help="Local Hugging Face model directory to start from.")]),
        inspect.Parameter("prompts", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[
            Path, typer.Argument(help="Prompts: a .txt file (one per line), or the prompt "
                                      "column of JSONL, Parquet or a datasets directory.")]),
        _option("out", Path, Path(name), "Output directory (created if missing).", "Run"),
        _option("resume", bool, False, "Continue from the last complete checkpoint.", "Run"),
        _option("overwrite", bool, False, "Delete the run already in --out first.", "Run"),
    ]  # fmt: skip
    overrides = {**TRAIN_DEFAULTS, "learning_rate": LEARNING_RATES.get(name, 1e-3)}
    params = (run_params + _judge_parameters() + _method_parameters(cls)
              + _group(TrainConfig, "", "Training", overrides))  # fmt: skip

    def command(**values: Any) -> None:
        from prefloop.data.io import load_prompts

        run = {k: values.pop(k) for k in RUN_FLAGS}
        judge_values = {k: values.pop(k) for k in JUDGE_FLAGS}
        train = coerce(TrainConfig, "training settings", _take(values, TrainConfig))
        hints = field_types(cls)
        values = {k: tuple(v) if typing.get_origin(hints[k]) is tuple else v
                  for k, v in values.items()}  # fmt: skip
        config = coerce(cls, f"method {name!r}", values)
        if run["resume"] and run["overwrite"]:
            raise ConfigError("--resume continues the run in --out; --overwrite deletes it: "
                              "choose one")  # fmt: skip
        judge = (_no_judge(name, judge_values) if getattr(cls, "self_judging", False)
                 else build_judge(judge_values, aspects=hasattr(config, "aspects")))  # fmt: skip
        prompts = load_prompts(run["prompts"])
        record = {"command": f"train-online --method {name}", "model": str(run["model"]),
                  "prompts": str(run["prompts"]), "method": vars(config),
                  "judge": type(judge).__name__ if judge else "self"}  # fmt: skip
        online = OnlineRun(run["model"], prompts, judge, judge_values["value_model"])
        result = train_online(config, online, train, run["out"], resume=run["resume"],
                              overwrite=run["overwrite"], record=record)  # fmt: skip
        if PartialState().is_main_process:
            console.print(f"{name}: saved to {run['out']} ({result.steps} steps, "
                          f"{judge.labels_used if judge else 0} labels, "
                          f"loss {result.final_loss:.4f})")  # fmt: skip

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = (cls.__doc__ or name).strip().splitlines()[0]
    holder = typer.Typer(add_completion=False)
    holder.command(name, help=command.__doc__)(command)
    return typer.main.get_command(holder)


def dispatch(ctx: click.Context, method: str | None, console: Console) -> None:
    """Run ``--method``'s command on the remaining arguments (``--help`` included)."""
    if method is None:
        names = ", ".join(ONLINE_METHODS)
        if "--help" in ctx.args or not ctx.args:
            console.print(
                "usage: prefloop train-online --method NAME MODEL PROMPTS \\[options]\n"
                f"methods: {names}\n"
                "`prefloop train-online --method NAME --help` lists its options.")  # fmt: skip
            return
        raise ConfigError(f"--method is required; one of {names}")
    if method not in ONLINE_METHODS:
        raise ConfigError(f"unknown online method {method!r}; one of {', '.join(ONLINE_METHODS)}")
    command = online_command(method, console)
    command.main(args=list(ctx.args), prog_name=f"prefloop train-online --method {method}",
                 standalone_mode=False)  # fmt: skip
