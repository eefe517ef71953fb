"""The counterpart side of ``benchmarks/run.py``: TRL's DPOTrainer and RewardTrainer, and
transformers' ``generate`` called the plain way. Runs in its own virtual environment; it does
not import prefloop."""

from __future__ import annotations

import importlib
import sys
import tempfile
import time

import torch
from bench_common import (
    StepTimer,
    read_pairs,
    report,
    report_online,
    report_training,
    start_job,
)
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    TrainerCallback,
)


class _Steps(TrainerCallback):
    def __init__(self, timer: StepTimer) -> None:
        self.timer = timer

    def on_step_end(self, args, state, control, **kwargs):
        self.timer.step()


def _ordered(trainer_cls, order: list[int]):
    """``trainer_cls`` drawing examples in ``order`` (prefloop's batches), so losses compare."""

    class Ordered(trainer_cls):
        def _get_train_sampler(self, train_dataset=None):
            return order

    return Ordered


def sample(job: dict, pairs: list[dict]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(job["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(job["model_dir"]).eval()
    tokenizer.padding_side = "left"
    prompts = [p["prompt"] for p in pairs]
    batch = job["batch_size"]

    def run(chunk: list[str], new: int) -> int:
        inputs = tokenizer(chunk, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model.generate(**inputs, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                 max_new_tokens=new, num_return_sequences=job["samples"],
                                 pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)  # fmt: skip
        generated = out[:, inputs["input_ids"].shape[1] :]
        # tokens up to and including the first EOS (the rest is padding)
        done = (generated == tokenizer.eos_token_id).long().cumsum(-1)
        return int(((done == 0) | ((done == 1) & (generated == tokenizer.eos_token_id))).sum())

    run(prompts[:batch], 2)  # warm-up
    torch.manual_seed(0)
    started = time.perf_counter()
    tokens = sum(run(prompts[i : i + batch], job["max_new_tokens"])
                 for i in range(0, len(prompts), batch))  # fmt: skip
    report(tokens / (time.perf_counter() - started), new_tokens=tokens)


def train(job: dict, pairs: list[dict]) -> None:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    tokenizer = AutoTokenizer.from_pretrained(job["model_dir"])
    # prefloop tokenises prompt and response apart; a space keeps TRL's joint string the same
    rows = [{"prompt": p["prompt"], "chosen": " " + p["chosen"], "rejected": " " + p["rejected"]}
            for p in pairs]  # fmt: skip
    steps = len(job["step_tokens"])
    common = dict(
        per_device_train_batch_size=job["batch_size"], learning_rate=job["learning_rate"],
        num_train_epochs=1, lr_scheduler_type="linear",
        warmup_steps=int(job["warmup_ratio"] * steps), weight_decay=0.0, max_grad_norm=1.0,
        optim="adamw_torch", seed=job["seed"], data_seed=job["seed"], logging_steps=1,
        save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True, bf16=False,
        dataloader_num_workers=0, max_length=job["max_length"],
    )  # fmt: skip
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        if job["workload"] == "dpo":
            model = AutoModelForCausalLM.from_pretrained(job["model_dir"])
            args = DPOConfig(output_dir=tmp, beta=job["beta"], precompute_ref_log_probs=True,
                             precompute_ref_batch_size=64, **common)  # fmt: skip
            trainer_cls = DPOTrainer
        else:
            torch.manual_seed(job["seed"])  # the value head starts as prefloop's does
            model = AutoModelForSequenceClassification.from_pretrained(
                job["model_dir"], num_labels=1
            )
            model.config.pad_token_id = tokenizer.pad_token_id
            args = RewardConfig(output_dir=tmp, **common)
            trainer_cls = RewardTrainer
        trainer = _ordered(trainer_cls, job["order"])(
            model=model, args=args, train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer, callbacks=[_Steps(timer)],
        )  # fmt: skip
        trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    report_training(job, timer, losses)


def grpo(job: dict) -> None:
    """TRL's GRPOTrainer on the verifiable world, prompts in prefloop's order."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    module, _, name = job["reward"].partition(":")
    sys.path.insert(0, job["reward_path"])  # the very checker prefloop's side scores with
    check = getattr(importlib.import_module(module), name)

    def correctness(prompts, completions, **_):
        return check(prompts, completions)

    samples = job["rollout_prompts"] * job["samples"]
    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(
            output_dir=tmp, per_device_train_batch_size=samples, num_generations=job["samples"],
            max_completion_length=job["max_new_tokens"], temperature=job["temperature"],
            top_p=1.0, top_k=0, learning_rate=job["learning_rate"], beta=job["beta"],
            epsilon=job["epsilon"], loss_type=job["loss_type"], scale_rewards="group",
            max_steps=job["steps"], lr_scheduler_type="linear", warmup_steps=0,
            weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch", seed=job["seed"],
            data_seed=job["seed"], shuffle_dataset=False, logging_steps=1, save_strategy="no",
            report_to="none", disable_tqdm=True, use_cpu=True, bf16=False,
            dataloader_num_workers=0,
        )  # fmt: skip
        timer = StepTimer()
        trainer = GRPOTrainer(
            model=job["model_dir"], reward_funcs=[correctness], args=args,
            train_dataset=Dataset.from_list([{"prompt": p} for p in job["ordered_prompts"]]),
            callbacks=[_Steps(timer)],
        )  # fmt: skip
        trainer.train()
    logged = [entry for entry in trainer.state.log_history if "reward" in entry]
    report_online(timer, [e["completions/mean_length"] * samples for e in logged],
                  [e["reward"] for e in logged])  # fmt: skip


def main() -> None:
    job = start_job()
    if job["workload"] == "grpo":
        return grpo(job)
    pairs = read_pairs(job)
    (sample if job["workload"] == "sample" else train)(job, pairs)


if __name__ == "__main__":
    main()
