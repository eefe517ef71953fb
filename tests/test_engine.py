"""The one training loop: exact resume, safe checkpoints and run directories, accumulation."""

import json

import numpy as np
import pytest
import torch

from prefloop.errors import RunDirectoryError, TrainingDivergedError
from prefloop.models.policy import Policy
from prefloop.train.config import ConfigError
from prefloop.train.engine import Task, Trainable, TrainConfig, fit, latest_checkpoint
from prefloop.train.sft import train_sft
from prefloop.train.sources import Batch, IndexSource, Shard, batch_indices


class Interrupt(Exception):
    pass


def interrupt_at(step_to_stop: int):
    def callback(step, _record):
        if step == step_to_stop:
            raise Interrupt

    return callback


def sft_examples(world):
    return world.corpus(40, seed=2)


def config(**changes) -> TrainConfig:
    settings = dict(learning_rate=5e-3, batch_size=8, epochs=2, checkpoint_every=3, log_every=1)
    return TrainConfig(**(settings | changes))


class Linear:
    """A one-layer task whose loss draws from torch's RNG, as dropout would."""

    def __init__(self, examples: int = 8, batch_size: int = 2, seed: int = 0, nan_at: int = 0):
        self.model = torch.nn.Linear(2, 1)
        torch.nn.init.zeros_(self.model.weight), torch.nn.init.zeros_(self.model.bias)
        self.examples, self.batch_size, self.seed, self.nan_at = examples, batch_size, seed, nan_at
        self.calls = 0

    def loss(self, indices):
        self.calls += 1
        x = torch.tensor([[float(i), 1.0] for i in indices])
        value = (self.model(x) - torch.randn(len(indices), 1)).pow(2).mean()
        return (value * float("nan") if self.calls == self.nan_at else value), {}

    def task(self) -> Task:
        def save(path):
            torch.save(self.model.state_dict(), path / "weights.pt")

        source = IndexSource(self.examples, self.batch_size, self.seed)
        return Task("linear", source, self.loss, [Trainable(self)], save, {"examples": 8})


def test_resume_after_interruption_matches_an_uninterrupted_run(tiny_model_dir, world, tmp_path):
    examples = sft_examples(world)
    straight = Policy.from_pretrained(tiny_model_dir, device="cpu")
    done = train_sft(straight, examples, config(), tmp_path / "straight", show_progress=False)
    assert done.steps == 10

    interrupted = Policy.from_pretrained(tiny_model_dir, device="cpu")
    run = tmp_path / "interrupted"
    with pytest.raises(Interrupt):
        train_sft(interrupted, examples, config(), run, show_progress=False,
                  callbacks=[interrupt_at(5)])  # fmt: skip
    assert latest_checkpoint(run).name == "step-0000003"
    resumed = Policy.from_pretrained(tiny_model_dir, device="cpu")  # a fresh process would reload
    result = train_sft(resumed, examples, config(), run, resume=True, show_progress=False)

    assert result.steps == 10
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 11))
    straight_losses = [
        json.loads(x)["loss"] for x in (tmp_path / "straight" / "metrics.jsonl").open()
    ]
    resumed_losses = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").open()]
    assert resumed_losses == pytest.approx(straight_losses, abs=1e-6)
    assert (run / "model.safetensors").exists()  # the final model, written by the engine


def test_gradient_checkpointing_recomputes_layers_and_trains_the_same(
    tiny_model_dir, world, tmp_path
):
    trained = {}
    for recompute in (False, True):
        policy = Policy.from_pretrained(tiny_model_dir, device="cpu")
        result = train_sft(policy, sft_examples(world), config(gradient_checkpointing=recompute),
                           tmp_path / str(recompute), show_progress=False)  # fmt: skip
        layers = policy.model.base_model.layers
        assert [layer.gradient_checkpointing for layer in layers] == [recompute] * len(layers)
        trained[recompute] = result.final_loss, list(policy.model.parameters())
    assert trained[True][0] == pytest.approx(trained[False][0], abs=1e-6)
    for a, b in zip(trained[False][1], trained[True][1]):
        assert torch.allclose(a, b, atol=1e-5)


def test_a_partial_checkpoint_left_by_a_kill_is_ignored_on_resume(tmp_path):
    straight = Linear()
    fit(straight.task(), TrainConfig(batch_size=2, max_steps=6), tmp_path / "a",
        show_progress=False)  # fmt: skip

    interrupted = Linear()
    run = tmp_path / "b"
    cfg = TrainConfig(batch_size=2, max_steps=6, checkpoint_every=2)
    with pytest.raises(Interrupt):
        fit(interrupted.task(), cfg, run, show_progress=False, callbacks=[interrupt_at(3)])
    # a kill while writing step 4: the folder exists but was never completed
    partial = run / "checkpoints" / "step-0000004.partial"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half a file")
    assert latest_checkpoint(run).name == "step-0000002"

    resumed = Linear()
    result = fit(resumed.task(), cfg, run, resume=True, show_progress=False)
    assert result.steps == 6
    assert torch.allclose(resumed.model.weight, straight.model.weight, atol=1e-6)
    assert not partial.exists()  # cleaned up by the next complete checkpoint
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-0000004",
        "step-0000006",
    ]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    task = Linear(nan_at=5).task()
    cfg = TrainConfig(batch_size=2, max_steps=10, checkpoint_every=2)
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at step 5.*step-0000004"):
        fit(task, cfg, tmp_path, show_progress=False)
    assert latest_checkpoint(tmp_path).name == "step-0000004"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step-0000002", "step-0000004"
    ]  # fmt: skip


def test_resume_with_other_settings_is_refused_naming_them(tmp_path):
    fit(Linear().task(), TrainConfig(batch_size=2, max_steps=4), tmp_path, show_progress=False)
    with pytest.raises(RunDirectoryError) as error:
        fit(Linear().task(), TrainConfig(batch_size=2, max_steps=4, learning_rate=0.01,
                                         epochs=2.0), tmp_path, resume=True)  # fmt: skip
    message = str(error.value)
    assert "train.learning_rate: 0.001 then, 0.01 now" in message
    assert "train.epochs: 1.0 then, 2.0 now" in message
    other_data = Linear().task()
    other_data.settings = {"examples": 9}
    with pytest.raises(RunDirectoryError, match="examples: 8 then, 9 now"):
        fit(other_data, TrainConfig(batch_size=2, max_steps=4), tmp_path, resume=True)
    # logging and checkpointing cadence never change the numbers: resuming with them is fine
    same = TrainConfig(batch_size=2, max_steps=4, log_every=1, checkpoint_every=1)
    assert fit(Linear().task(), same, tmp_path, resume=True, show_progress=False).steps == 4


def test_a_fresh_start_in_a_used_directory_refuses_or_starts_clean(tmp_path):
    cfg = TrainConfig(batch_size=2, max_steps=4, checkpoint_every=1)
    fit(Linear().task(), cfg, tmp_path / "used", show_progress=False)
    with pytest.raises(RunDirectoryError, match=r"already holds a training run \(checkpoints, "
                                                r"metrics.jsonl\)\. Pass --resume"):  # fmt: skip
        fit(Linear().task(), cfg, tmp_path / "used", show_progress=False)
    again = Linear()
    fit(again.task(), TrainConfig(batch_size=2, max_steps=2), tmp_path / "used", overwrite=True,
        show_progress=False)  # fmt: skip
    assert [p.name for p in (tmp_path / "used" / "checkpoints").iterdir()] == ["step-0000002"]
    clean = Linear()
    fit(clean.task(), TrainConfig(batch_size=2, max_steps=2), tmp_path / "empty",
        show_progress=False)  # fmt: skip
    assert torch.equal(again.model.weight, clean.model.weight)


def test_batches_cover_each_epoch_once_and_reshuffle_between_epochs():
    first = [i for step in range(3) for i in batch_indices(10, 4, step, seed=0)]
    second = [i for step in range(3, 6) for i in batch_indices(10, 4, step, seed=0)]
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second


def test_shards_split_the_global_batch_and_every_process_gets_a_share():
    source = IndexSource(10, 4, seed=0)
    whole = source.batch(2, Shard()).items  # the last batch of the epoch has 2 examples
    parts = [source.batch(2, Shard(k, 3)) for k in range(3)]
    assert sorted(whole) == sorted(i for p in parts if not p.padded for i in p.items)
    assert [p.padded for p in parts] == [False, False, True]  # a stand-in item of weight 0
    assert all(p.global_size == 2 for p in parts)


def test_gradient_accumulation_gives_the_same_update_as_one_batch(tmp_path):
    class Deterministic(Linear):
        def loss(self, indices):
            x = torch.tensor([[float(i), 1.0] for i in indices])
            return (self.model(x) - 1.0).pow(2).mean(), {}

    results = {}
    for accumulation in (1, 2, 3):
        run = Deterministic(examples=10, batch_size=5)
        cfg = TrainConfig(batch_size=5, epochs=2, gradient_accumulation=accumulation)
        fit(run.task(), cfg, tmp_path / str(accumulation), show_progress=False)
        results[accumulation] = run.model.weight.detach().clone()
    assert torch.allclose(results[1], results[2], atol=1e-6)
    assert torch.allclose(results[1], results[3], atol=1e-6)


def test_resume_without_a_checkpoint_is_a_seeded_fresh_start(tmp_path):
    def train(out, resume):
        run = Linear(seed=3)
        torch.manual_seed(len(str(out)))  # a different global RNG state for each run
        fit(run.task(), TrainConfig(batch_size=2, max_steps=4, seed=3), out, resume,
            show_progress=False)  # fmt: skip
        return run.model.weight.detach().clone()

    assert torch.equal(train(tmp_path / "plain", False), train(tmp_path / "empty-dir", True))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"batch_size": 0}, "option 'batch_size' must be a number >= 1, got 0"),
        ({"batch_size": -4}, "option 'batch_size' must be a number >= 1, got -4"),
        ({"epochs": 0.0}, "option 'epochs' must be a number > 0, got 0.0"),
        ({"learning_rate": float("nan")}, "option 'learning_rate' must be a number > 0, got nan"),
        ({"mixed_precision": "fp8"}, "option 'mixed_precision' must be one of auto, no, bf16"),
        ({"batch_size": 2.5}, "option 'batch_size' must be int, got 2.5"),
    ],
)
def test_training_settings_are_validated(changes, message):
    with pytest.raises(ConfigError, match=f"training settings: {message}".replace("(", r"\(")):
        TrainConfig(**changes)


class Drawn:
    """An endless source that makes its batches as it goes (as sampling from a policy would):
    its random state and position are its own, checkpointed with the model."""

    examples = None

    def __init__(self) -> None:
        self.rng = np.random.default_rng(5)
        self.made = 0

    def batch(self, step, shard):
        self.made += 1
        return Batch([int(i) for i in self.rng.integers(0, 50, size=4)], 4)

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state, "made": self.made}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]
        self.made = state["made"]


def test_an_online_source_resumes_exactly_from_its_checkpointed_state(tmp_path):
    def run(out, **extra):
        holder = Linear()
        source = Drawn()
        task = Task("online", source, holder.loss, [Trainable(holder)], lambda path: None)
        cfg = TrainConfig(batch_size=4, max_steps=6, checkpoint_every=2)
        fit(task, cfg, out, show_progress=False, **extra)
        return holder.model.weight.detach().clone(), source.made

    straight, made = run(tmp_path / "straight")
    with pytest.raises(Interrupt):
        run(tmp_path / "resumed", callbacks=[interrupt_at(3)])
    resumed, made_after_resume = run(tmp_path / "resumed", resume=True)
    assert made == 6 and made_after_resume == 6  # restored at 2 made, then 4 more
    assert torch.allclose(straight, resumed, atol=1e-6)
    with pytest.raises(ValueError, match="an endless batch source needs max_steps"):
        TrainConfig().total_steps(None)
