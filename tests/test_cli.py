"""The command line on a user's own files: JSONL, Parquet and HF dataset directories."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from prefloop.cli import app
from prefloop.data.io import save_records
from prefloop.worlds.annotators import BradleyTerryAnnotator

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_train_rm_then_eval_it_against_the_gold_reward(tiny_model_dir, pair_files, tmp_path):
    out = tmp_path / ("a-run-directory-whose-path-is-longer-than-one-line-of-a-terminal-" * 2)
    result = invoke("train-rm", tiny_model_dir, pair_files["jsonl"], "--out", out, "--epochs", 1,
                    "--lr", 1e-3, "--batch-size", 8)  # fmt: skip
    assert (out / "model.safetensors").exists()
    assert f"rm: saved to {out} (" in result.output  # on one line, whatever the path's length
    config = json.loads((out / "run_config.json").read_text())
    assert config["config"]["command"] == "train rm" and "transformers" in config["environment"]
    assert config["config"]["launch"] == {
        "processes": 1, "distributed_type": "NO", "backend": None, "device": "cpu",
        "mixed_precision": "no", "global_batch": 8, "gradient_accumulation": 1,
        "per_device_micro_batch": 8,
    }  # fmt: skip
    invoke("eval", out, pair_files["parquet"], "--out", tmp_path / "ev", "--world", "reviews")
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["kind"] == "reward_model" and 0.0 <= report["heldout_accuracy"] <= 1.0


def test_train_with_same_seed_gives_same_numbers(tiny_model_dir, pair_files, tmp_path):
    losses = []
    for run in ("a", "b"):
        invoke("train", "dpo", tiny_model_dir, pair_files["parquet"],
               "--out", tmp_path / run, "--lr", 1e-3, "--batch-size", 8, "--seed", 7)  # fmt: skip
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        losses.append([json.loads(line)["loss"] for line in lines])
    assert losses[0] == losses[1]


def test_train_any_objective_from_an_hf_dataset_dir_and_eval_the_policy(
    tiny_model_dir, pair_files, tmp_path
):
    out = tmp_path / "ipo"
    invoke("train", "ipo", tiny_model_dir, pair_files["hf"], "--beta", 0.5,
           "--out", out, "--lr", 1e-3, "--batch-size", 8)  # fmt: skip
    invoke("eval", out, pair_files["jsonl"], "--out", tmp_path / "ev", "--reference",
           tiny_model_dir, "--world", "reviews", "--samples", 2)  # fmt: skip
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["kind"] == "policy"
    assert report["kl"] > 0 and 0 <= report["implicit_reward_accuracy"] <= 1
    assert "gold_reward" in report and len(report["kl_per_prompt"]) > 0


def refused(*args) -> str:
    """Run the CLI expecting a user error: exit 2 with a message, the error handled."""
    result = runner.invoke(app, [str(a) for a in args], prog_name="prefloop")
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not an escaped error
    return " ".join(result.output.split())  # rich wraps long lines


def test_malformed_data_is_a_short_message_without_a_traceback(tiny_model_dir, tmp_path):
    """Through the real entry point, as a user runs it."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": ""')
    for command in (["train", "dpo", tiny_model_dir, bad], ["train-rm", tiny_model_dir, bad],
                    ["eval", tiny_model_dir, bad]):  # fmt: skip
        result = subprocess.run([sys.executable, "-m", "prefloop.cli", *map(str, command),
                                 "--out", str(tmp_path / "out")], capture_output=True, text=True,
                                cwd=tmp_path)  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert f"{bad}:2" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        assert len(result.stderr.strip().splitlines()) <= 3, result.stderr


def test_a_path_that_is_not_a_model_directory_says_what_is_missing(pair_files, tmp_path):
    output = refused("train", "dpo", tmp_path / "nowhere", pair_files["jsonl"])
    assert "nowhere: no such model directory" in output
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    output = refused("train-rm", tmp_path / "half", pair_files["jsonl"])
    assert "half: not a model directory: missing weights" in output and "a tokenizer" in output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-size", "0"], "option 'batch_size' must be a number >= 1, got 0"),
        (["--batch-size", "-4"], "option 'batch_size' must be a number >= 1, got -4"),
        (["--epochs", "0"], "option 'epochs' must be a number > 0, got 0.0"),
        (["--epochs", "-1"], "option 'epochs' must be a number > 0, got -1.0"),
        (["--lr", "nan"], "option 'learning_rate' must be a number > 0, got nan"),
        (["--beta", "-1"], "method 'dpo': option 'beta' must be a number > 0, got -1.0"),
        (["--gradient-accumulation", "0"], "option 'gradient_accumulation' must be a number >= 1"),
        (["--lora-r", "-2"], "LoRA settings: option 'r' must be a number >= 0, got -2"),
    ],
)
def test_out_of_range_settings_are_usage_errors(tiny_model_dir, pair_files, tmp_path, flags,
                                                message):  # fmt: skip
    output = refused("train", "dpo", tiny_model_dir, pair_files["jsonl"], "--out",
                     tmp_path / "o", *flags)  # fmt: skip
    assert message in output
    assert not (tmp_path / "o" / "checkpoints").exists()


def test_eval_refuses_a_beta_that_is_not_positive(tiny_model_dir, pair_files):
    for command in ("eval", "eval-rm"):
        output = refused(command, tiny_model_dir, *(["--data"] if command == "eval-rm" else []),
                         pair_files["jsonl"], "--beta", "-1")  # fmt: skip
        assert "Invalid value for '--beta': must be a number > 0, got -1.0" in output


def test_unknown_methods_and_options_name_what_was_wrong(tiny_model_dir, pair_files, tmp_path):
    output = refused("train", "nope", tiny_model_dir, pair_files["jsonl"])
    assert "No such command 'nope'" in output
    output = refused("train", "simpo", tiny_model_dir, pair_files["jsonl"], "--gama", "1")
    assert "No such option: --gama (Possible options: --gamma)" in output
    assert "Try 'prefloop train simpo --help'" in output
    output = refused("train", "cdpo", tiny_model_dir, pair_files["jsonl"], "--label-smoothing",
                     "0.9")  # fmt: skip
    assert "method 'cdpo'" in output and "'label_smoothing' must lie in [0.0, 0.5]" in output


def test_resume_and_reuse_of_a_run_directory_are_checked(tiny_model_dir, pair_files, tmp_path):
    out = tmp_path / "run"
    common = ["train", "dpo", tiny_model_dir, pair_files["jsonl"], "--out", out, "--lr", 1e-3,
              "--batch-size", 8, "--checkpoint-every", 2]  # fmt: skip
    invoke(*common)
    output = refused(*common, "--epochs", 2, "--resume")
    assert "cannot resume" in output and "train.epochs: 1.0 then, 2.0 now" in output
    output = refused(*common)
    assert "already holds a training run" in output and "--overwrite" in output
    invoke(*common, "--overwrite")
    invoke(*common, "--resume")  # the same settings: nothing left to do, and no error


def test_a_fresh_run_in_a_reused_directory_never_trains_on_a_stale_reference(
    tiny_model_dir, pair_files, world, tmp_path
):
    """Old code reused the reference log-probs of another data file of the same size."""
    other = BradleyTerryAnnotator(world, temperature=0.5, seed=1).label_pairs(
        [(p, r, o) for (p, r), (_, o) in zip(world.corpus(96, 7)[::2], world.corpus(96, 7)[1::2])]
    )
    other_file = save_records(other, tmp_path / "other.jsonl")
    flags = ["--lr", 1e-3, "--batch-size", 8, "--max-steps", 2, "--log-every", 1]
    invoke("train", "dpo", tiny_model_dir, pair_files["jsonl"], "--out", tmp_path / "used", *flags)
    refused("train", "dpo", tiny_model_dir, other_file, "--out", tmp_path / "used", *flags)
    invoke("train", "dpo", tiny_model_dir, other_file, "--out", tmp_path / "used", "--overwrite",
           *flags)  # fmt: skip
    invoke("train", "dpo", tiny_model_dir, other_file, "--out", tmp_path / "empty", *flags)
    losses = [(tmp_path / run / "metrics.jsonl").read_text() for run in ("used", "empty")]
    assert losses[0] == losses[1]
