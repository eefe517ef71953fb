"""The command line on a user's own files: JSONL, Parquet and HF dataset directories."""

import json

import pytest
from typer.testing import CliRunner

from prefloop.cli import app
from prefloop.data.io import save_records
from prefloop.worlds.annotators import BradleyTerryAnnotator

runner = CliRunner()


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory, world):
    corpus = world.corpus(96, seed=5)
    annotator = BradleyTerryAnnotator(world, temperature=0.5, seed=0)
    comparisons = annotator.label_pairs(
        [(p, r, other) for (p, r), (_, other) in zip(corpus[::2], corpus[1::2])]
    )
    root = tmp_path_factory.mktemp("pairs")
    return {
        "jsonl": save_records(comparisons, root / "pairs.jsonl"),
        "parquet": save_records(comparisons, root / "pairs.parquet"),
        "hf": save_records(comparisons, root / "pairs_dataset", format="hf"),
    }


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_train_rm_then_eval_it_against_the_gold_reward(tiny_model_dir, pair_files, tmp_path):
    out = tmp_path / "rm"
    invoke("train-rm", tiny_model_dir, pair_files["jsonl"], "--out", out, "--epochs", 1,
           "--lr", 1e-3, "--batch-size", 8)  # fmt: skip
    assert (out / "model.safetensors").exists()
    config = json.loads((out / "run_config.json").read_text())
    assert config["config"]["command"] == "train-rm" and "transformers" in config["environment"]
    invoke("eval", out, pair_files["parquet"], "--out", tmp_path / "ev", "--world", "reviews")
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["kind"] == "reward_model" and 0.0 <= report["heldout_accuracy"] <= 1.0


def test_train_with_same_seed_gives_same_numbers(tiny_model_dir, pair_files, tmp_path):
    losses = []
    for run in ("a", "b"):
        invoke("train", tiny_model_dir, pair_files["parquet"], "--objective", "dpo",
               "--out", tmp_path / run, "--lr", 1e-3, "--batch-size", 8, "--seed", 7)  # fmt: skip
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        losses.append([json.loads(line)["loss"] for line in lines])
    assert losses[0] == losses[1]


def test_train_any_objective_from_an_hf_dataset_dir_and_eval_the_policy(
    tiny_model_dir, pair_files, tmp_path
):
    out = tmp_path / "ipo"
    invoke("train", tiny_model_dir, pair_files["hf"], "--objective", "ipo", "--beta", 0.5,
           "--out", out, "--lr", 1e-3, "--batch-size", 8)  # fmt: skip
    invoke("eval", out, pair_files["jsonl"], "--out", tmp_path / "ev", "--reference",
           tiny_model_dir, "--world", "reviews", "--samples", 2)  # fmt: skip
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["kind"] == "policy"
    assert report["kl"] > 0 and 0 <= report["implicit_reward_accuracy"] <= 1
    assert "gold_reward" in report and len(report["kl_per_prompt"]) > 0


def test_unknown_objective_and_malformed_data_fail_clearly(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": ""')
    result = runner.invoke(app, ["train", str(tiny_model_dir), str(bad), "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert f"{bad}:2" in str(result.exception) + result.output
    result = runner.invoke(app, ["train", str(tiny_model_dir), str(bad), "--objective", "nope"])
    assert result.exit_code != 0 and "unknown objective 'nope'" in result.output
