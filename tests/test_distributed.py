"""Data parallelism and gradient accumulation give the single-process result.

Two CPU processes (``torchrun``, gloo) with the same global batch, and one process that
accumulates micro-batches, must reach the weights of a plain single-process run; the
tolerance covers float32 sums taken in another order.
"""

import os
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from prefloop.cli import app

pytestmark = pytest.mark.slow
TOLERANCE = 1e-5
FLAGS = ["--lr", "1e-3", "--batch-size", "16", "--max-steps", "3", "--log-every", "1"]


@pytest.fixture(scope="module")
def pairs_file(pair_files):
    return pair_files["jsonl"]


def single_process(method, model, data, out, *flags):
    result = CliRunner().invoke(app, ["train", method, str(model), str(data), "--out", str(out),
                                      *FLAGS, *flags])  # fmt: skip
    assert result.exit_code == 0, result.output
    return load_file(out / "model.safetensors")


def two_processes(method, model, data, out, *flags):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    command = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "prefloop.cli", "train",
               method, str(model), str(data), "--out", str(out), *FLAGS, *flags]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return load_file(out / "model.safetensors")


def max_difference(a, b) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("method", ["dpo", "rm"])
def test_two_processes_match_one_with_the_same_global_batch(method, tiny_model_dir, pairs_file,
                                                            tmp_path):  # fmt: skip
    one = single_process(method, tiny_model_dir, pairs_file, tmp_path / "one")
    two = two_processes(method, tiny_model_dir, pairs_file, tmp_path / "two")
    moved = max_difference(one, load_file(tiny_model_dir / "model.safetensors")) if (
        method == "dpo"
    ) else 1.0  # fmt: skip
    assert moved > 100 * TOLERANCE  # training changed the weights far more than the tolerance
    assert max_difference(one, two) < TOLERANCE
    launch = (tmp_path / "two" / "run_config.json").read_text()
    assert '"processes": 2' in launch and '"backend": "gloo"' in launch
    assert '"per_device_micro_batch": 8' in launch


@pytest.mark.parametrize("method", ["dpo", "rm"])
def test_accumulating_two_micro_batches_of_8_matches_a_batch_of_16(
    method, tiny_model_dir, pairs_file, tmp_path
):
    whole = single_process(method, tiny_model_dir, pairs_file, tmp_path / "whole")
    accumulated = single_process(method, tiny_model_dir, pairs_file, tmp_path / "accumulated",
                                 "--gradient-accumulation", "2")  # fmt: skip
    assert max_difference(whole, accumulated) < TOLERANCE
