"""A judge that asks people: pairs go to a running ``prefloop serve`` project as items, and
the call returns once each has a judgment (from a human or an AI judge posting to it).

Items carry an ``external_id`` built from the run's tag, the call's seed and the pair's
position, so a resumed run that asks again re-uses the items (and judgments) it already
posted instead of asking twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prefloop.data.records import Prompt
from prefloop.serve.client import Client


class ServiceJudgeTimeout(RuntimeError):
    """The people did not judge every posted pair in time."""


class ServiceJudge:
    """Pairwise judge over a feedback-service project of task ``pairwise``.

    The answer for a pair is the mean canonical preference of its judgments (P(first ≻
    second)); a tie counts ½. One label is spent per pair.
    """

    def __init__(self, client: Client, project_id: int, tag: str = "online",
                 poll_seconds: float = 2.0, timeout_seconds: float = 3600.0) -> None:  # fmt: skip
        self.client, self.project_id, self.tag = client, project_id, tag
        self.poll_seconds, self.timeout_seconds = poll_seconds, timeout_seconds
        self.labels_used = 0

    def prefer(self, prompts: Sequence[Prompt], first: Sequence[str], second: Sequence[str],
               seed: int = 0) -> list[float]:  # fmt: skip
        items = [{"external_id": f"{self.tag}-{seed}-{i}", "prompt": prompt,
                  "responses": [{"text": a or " ", "source": "policy"},
                                {"text": b or " ", "source": "policy"}],
                  "metadata": {"run": self.tag, "seed": seed}}
                 for i, (prompt, a, b) in enumerate(zip(prompts, first, second))]  # fmt: skip
        ids = self.client.add_items(self.project_id, items).ids
        wanted = {item_id: position for position, item_id in enumerate(ids)}
        answers: dict[int, list[float]] = {}
        deadline = time.monotonic() + self.timeout_seconds
        after = 0  # read from the start: judgments of re-used items may predate this call
        while True:
            for judgment in self.client.new_judgments(self.project_id, after=after):
                after = judgment.id
                if judgment.item_id in wanted and judgment.preference is not None:
                    answers.setdefault(judgment.item_id, []).append(judgment.preference)
            if len(answers) == len(wanted):
                break
            if time.monotonic() > deadline:
                raise ServiceJudgeTimeout(
                    f"project {self.project_id}: {len(wanted) - len(answers)} of {len(wanted)} "
                    f"pairs still unjudged after {self.timeout_seconds:.0f} s")  # fmt: skip
            time.sleep(self.poll_seconds)
        self.labels_used += len(wanted)
        return [sum(answers[i]) / len(answers[i]) for i in ids]
