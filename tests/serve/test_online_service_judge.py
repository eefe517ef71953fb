"""The feedback-service judge against a real ``prefloop serve``, an AI judge answering."""

from __future__ import annotations

import threading

import pytest
from serve_helpers import LiveServer

from prefloop.online.service_judge import ServiceJudge, ServiceJudgeTimeout
from prefloop.serve import Client, ServeHTTPError


class LongerAnswerJudge(threading.Thread):
    """An AI judge that polls the project's items and prefers the longer response."""

    def __init__(self, client: Client, project_id: int) -> None:
        super().__init__(daemon=True)
        self.client, self.project_id = client, project_id
        self.done = threading.Event()
        self.answered = 0

    def run(self) -> None:
        next_id = 1
        judge = {"name": "longer", "model": "rule", "prompt_version": "v1"}
        while not self.done.is_set():
            try:
                item = self.client.item(self.project_id, next_id)
            except ServeHTTPError:  # not posted yet
                self.done.wait(0.05)
                continue
            a, b = (len(r["text"]) for r in item.responses)
            label = {"choice": "left" if a > b else "right" if b > a else "tie"}
            self.client.add_ai_judgment(self.project_id, item.id, judge, label)
            self.answered += 1
            next_id += 1


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("service-judge")
    server = LiveServer(f"sqlite:///{folder / 'feedback.db'}", folder / "server.log").start(True)
    yield server
    server.stop()


def test_service_judge_waits_for_the_judgments_and_reuses_items(server):
    with Client(server.base, server.token) as admin:
        project = admin.create_project("online-judge", task="pairwise")
    with Client(server.base, project.admin_token) as client:
        answering = LongerAnswerJudge(client, project.id)
        answering.start()
        judge = ServiceJudge(client, project.id, tag="run1", poll_seconds=0.05, timeout_seconds=60)
        prompts = ["q0", "q1", "q2"]
        first, second = ["a long answer", "no", "same"], ["short", "a longer one", "same"]
        assert judge.prefer(prompts, first, second, seed=7) == [1.0, 0.0, 0.5]
        assert judge.labels_used == 3
        # the same call again (a resumed run): no new items, the old judgments answer
        assert judge.prefer(prompts, first, second, seed=7) == [1.0, 0.0, 0.5]
        answering.done.set()
        answering.join(5)
        assert answering.answered == 3
        impatient = ServiceJudge(client, project.id, tag="run2", poll_seconds=0.05,
                                 timeout_seconds=0.2)  # fmt: skip
        with pytest.raises(ServiceJudgeTimeout, match="1 of 1 pairs still unjudged"):
            impatient.prefer(["q"], ["x"], ["yy"], seed=0)
