import json

import pytest
import torch

from prefloop.models.policy import Policy
from prefloop.train.engine import (
    TrainConfig,
    TrainingDivergedError,
    batch_indices,
    latest_checkpoint,
    run_training,
)
from prefloop.train.sft import train_sft


class Interrupt(Exception):
    pass


def interrupt_at(step_to_stop: int):
    def callback(step, _record):
        if step == step_to_stop:
            raise Interrupt

    return callback


def sft_examples(world):
    return world.corpus(40, seed=2)


def config() -> TrainConfig:
    return TrainConfig(learning_rate=5e-3, batch_size=8, epochs=2, checkpoint_every=3, log_every=1)


def test_resume_after_interruption_matches_an_uninterrupted_run(tiny_model_dir, world, tmp_path):
    examples = sft_examples(world)
    straight = Policy.from_pretrained(tiny_model_dir, device="cpu")
    done = train_sft(straight, examples, config(), tmp_path / "straight", show_progress=False)
    assert done.steps == 10

    interrupted = Policy.from_pretrained(tiny_model_dir, device="cpu")
    run = tmp_path / "interrupted"
    with pytest.raises(Interrupt):
        train_sft(
            interrupted, examples, config(), run, show_progress=False, callbacks=[interrupt_at(5)]
        )
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


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model = torch.nn.Linear(2, 1)

    def loss_fn(indices):
        step = len(saved_steps) + 1
        saved_steps.append(step)
        loss = model(torch.ones(len(indices), 2)).pow(2).mean()
        return (loss * float("nan") if step == 5 else loss), {}

    saved_steps: list[int] = []

    def save(path):
        torch.save(model.state_dict(), path / "weights.pt")

    cfg = TrainConfig(batch_size=2, max_steps=10, checkpoint_every=2)
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at step 5.*step-0000004"):
        run_training(model, 8, loss_fn, cfg, tmp_path, save, show_progress=False)
    assert latest_checkpoint(tmp_path).name == "step-0000004"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step-0000002", "step-0000004"
    ]  # fmt: skip


def test_batches_cover_each_epoch_once_and_reshuffle_between_epochs():
    first = [i for step in range(3) for i in batch_indices(10, 4, step, seed=0)]
    second = [i for step in range(3, 6) for i in batch_indices(10, 4, step, seed=0)]
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second


def test_resume_without_a_checkpoint_is_a_seeded_fresh_start(tmp_path):
    def train(out, resume):
        model = torch.nn.Linear(2, 1)
        torch.nn.init.zeros_(model.weight), torch.nn.init.zeros_(model.bias)

        def loss_fn(indices):  # draws from torch's RNG, as dropout would
            noise = torch.randn(len(indices), 1)
            return (model(torch.ones(len(indices), 2)) - noise).pow(2).mean(), {}

        torch.manual_seed(len(str(out)))  # a different global RNG state for each run
        cfg = TrainConfig(batch_size=2, max_steps=4, seed=3)
        run_training(model, 8, loss_fn, cfg, out, lambda p: None, resume, show_progress=False)
        return model.weight.detach().clone()

    assert torch.equal(train(tmp_path / "plain", False), train(tmp_path / "empty-dir", True))
