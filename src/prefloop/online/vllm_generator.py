"""The vLLM sampling backend (extra ``prefloop[vllm]``), colocated with training on one GPU.

UNVERIFIED: no GPU was available while this was written, so this backend has never run; the
README and docs/online.md say so. It follows vLLM's offline ``LLM`` API: prompts go in as
token ids, each completion comes back with its token ids, per-token log-probs
(``logprobs_mode="processed_logprobs"``, i.e. after temperature) and finish reason, and
:meth:`VLLMGenerator.sync` loads the policy's current weights into the engine after an update.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence

import torch

from prefloop.data.records import Prompt
from prefloop.models.policy import Policy
from prefloop.online.rollout import Decoding, Rollout


def available() -> bool:
    """vLLM is installed and a CUDA GPU is present."""
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


class VLLMGenerator:
    """Samples with a vLLM engine built from the policy's directory on first use."""

    def __init__(self, gpu_memory_utilization: float = 0.3, model_dir: str | None = None) -> None:
        if not available():
            raise RuntimeError("the vllm backend needs `pip install prefloop[vllm]` and a GPU")
        self.gpu_memory_utilization = gpu_memory_utilization
        self.model_dir = model_dir
        self._llm = None

    def _engine(self, policy: Policy):
        if self._llm is None:
            from vllm import LLM

            path = self.model_dir or getattr(policy.config, "_name_or_path", None)
            if not path:
                raise RuntimeError("the vllm backend needs the policy's model directory")
            self._llm = LLM(model=str(path), gpu_memory_utilization=self.gpu_memory_utilization,
                            dtype="bfloat16", logprobs_mode="processed_logprobs")  # fmt: skip
            self.sync(policy)
        return self._llm

    def sync(self, policy: Policy) -> None:
        if self._llm is None:
            return
        model = getattr(policy.model, "module", policy.model)
        engine_model = self._llm.llm_engine.model_executor.driver_worker.model_runner.model
        engine_model.load_weights(list(model.state_dict().items()))
        self._llm.reset_prefix_cache()

    def generate(
        self, policy: Policy, prompts: Sequence[Prompt], k: int, decoding: Decoding, seed: int
    ) -> Rollout:
        from vllm import SamplingParams

        started = time.perf_counter()
        llm = self._engine(policy)
        prompt_ids = policy.prompt_ids(prompts)
        params = SamplingParams(n=k, temperature=decoding.temperature, top_p=decoding.top_p,
                                top_k=decoding.top_k or -1, max_tokens=decoding.max_new_tokens,
                                stop=list(decoding.stop), include_stop_str_in_output=True,
                                logprobs=0, seed=seed)  # fmt: skip
        outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params,
                               use_tqdm=False)  # fmt: skip
        completions, logps, finished, texts = [], [], [], []
        for output in outputs:
            for sample in output.outputs:
                ids = list(sample.token_ids)
                completions.append(ids)
                logps.append(torch.tensor([step[t].logprob for t, step in
                                           zip(ids, sample.logprobs)]))  # fmt: skip
                finished.append(sample.finish_reason == "stop")
                texts.append(sample.text.strip())
        rollout = Rollout(list(prompts), prompt_ids, k, completions, logps, finished, texts,
                          time.perf_counter() - started)  # fmt: skip
        rollout.metrics["generation_tokens_per_second"] = rollout.tokens_per_second
        return rollout
