"""``prefloop train METHOD``: one command per method, its flags read from the method's settings.

The flags, their defaults and their ``--help`` come from the same dataclasses the Python API
and the labs use (:mod:`prefloop.train.methods`, :class:`TrainConfig`, :class:`LoraSettings`),
so there is one place for every default and every allowed range.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Annotated, Any

import typer
from accelerate import PartialState
from rich.console import Console

from prefloop.train.adapters import LoraSettings
from prefloop.train.config import ConfigError, coerce, field_types, help_of
from prefloop.train.engine import TrainConfig
from prefloop.train.methods import METHODS, Inputs, Method

#: Short flags for the most used training settings.
FLAG_NAMES = {"learning_rate": "--lr"}
RUN_FLAGS = ("model", "data", "out", "resume", "overwrite")


def _flag(name: str, prefix: str = "") -> str:
    return FLAG_NAMES.get(name, "--" + (prefix + name).replace("_", "-"))


def _parameter(f: Field, annotation: Any, default: Any, prefix: str, panel: str):
    """A keyword parameter whose typer option reads the field's flag name and help text."""
    if typing.get_origin(annotation) is typing.Literal:
        annotation = str
    option = typer.Option(_flag(f.name, prefix), help=help_of(f), rich_help_panel=panel)
    return inspect.Parameter(prefix + f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, option])  # fmt: skip


def _group(cls: type, prefix: str, panel: str, overrides: dict[str, Any] | None = None):
    """The parameters of every field of settings class ``cls``, under one help panel."""
    hints = field_types(cls)
    params = []
    for f in fields(cls):
        default = (overrides or {}).get(f.name, f.default)
        if default is MISSING:
            default = f.default_factory()  # type: ignore[misc]
        params.append(_parameter(f, hints[f.name], default, prefix, panel))
    return params


def _take(values: dict[str, Any], cls: type, prefix: str = "") -> dict[str, Any]:
    return {f.name: values.pop(prefix + f.name) for f in fields(cls)}


def method_command(method: Method, console: Console):
    """The ``prefloop train NAME`` command of ``method``."""
    run_params = [
        inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[
            Path, typer.Argument(help="Local Hugging Face model directory to start from.")]),
        inspect.Parameter("data", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[
            Path, typer.Argument(help=f"{method.describe_records()} records: JSONL, Parquet or "
                                      "a Hugging Face dataset directory.")]),
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, default=Path(method.name),
                          annotation=Annotated[Path, typer.Option(
                              "--out", help="Output directory (created if missing).")]),
        inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, default=False,
                          annotation=Annotated[bool, typer.Option(
                              help="Continue from the last complete checkpoint in --out.")]),
        inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, default=False,
                          annotation=Annotated[bool, typer.Option(
                              help="Delete the run already in --out and start again.")]),
    ]  # fmt: skip
    params = run_params + _group(method.config, "", "Method")
    params += _group(TrainConfig, "", "Training", {"learning_rate": method.learning_rate})
    if method.trains_policy:
        params += _group(LoraSettings, "lora_", "LoRA adapters")

    def command(**values: Any) -> None:
        from prefloop.data.io import load_records

        run = {k: values.pop(k) for k in RUN_FLAGS}
        train = coerce(TrainConfig, "training settings", _take(values, TrainConfig))
        lora = (
            coerce(LoraSettings, "LoRA settings", _take(values, LoraSettings, "lora_"))
            if method.trains_policy
            else LoraSettings()
        )
        config = coerce(method.config, f"method {method.name!r}", values)
        if run["resume"] and run["overwrite"]:
            raise ConfigError("--resume continues the run in --out; --overwrite deletes it: "
                              "choose one")  # fmt: skip
        records = load_records(run["data"])
        record = {"command": f"train {method.name}", "model": str(run["model"]),
                  "data": str(run["data"]), "method": vars(config), "lora": vars(lora)}  # fmt: skip
        inputs = Inputs(run["model"], records, train, run["out"], lora,
                        {"resume": run["resume"], "overwrite": run["overwrite"],
                         "record": record})  # fmt: skip
        result = method.recipe(config, inputs)
        if PartialState().is_main_process:
            console.print(f"{method.name}: saved to {run['out']} ({result.steps} steps, "
                          f"loss {result.final_loss:.4f})")  # fmt: skip

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = (method.config.__doc__ or method.name).strip().splitlines()[0]
    return command


def click_command(name: str, console: Console):
    """The click command of method ``name`` (None if there is no such method)."""
    if name not in METHODS:
        return None
    function = method_command(METHODS[name], console)
    holder = typer.Typer(add_completion=False)
    holder.command(name, help=function.__doc__)(function)
    return typer.main.get_command(holder)


def method_names() -> list[str]:
    return list(METHODS)
