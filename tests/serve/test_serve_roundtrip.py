"""Every export form reads back with ``load_records`` as the right records, and trains."""

from __future__ import annotations

import json

import pytest
from serve_helpers import make_setup
from typer.testing import CliRunner

from prefloop.cli import app
from prefloop.data import Comparison, Critique, Rating, Unpaired, load_records
from prefloop.serve.cli import export_command

API = "/api/v1"
FORMS = ("prefloop", "trl-explicit", "trl-implicit", "trl-kto")
QUALITY = ["best", "middle", "worst"]  # the annotators below always judge by this order
CONVERSATION = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
TASKS = {
    "pairwise": ({}, [("q", ["worst", "best"]), (CONVERSATION, ["best", "worst"])]),
    "ranking": ({}, [("q", QUALITY)]),
    "rating": ({"aspects": ["x"]}, [("q", QUALITY)]),
    "critique": ({}, [("q", ["best", "worst"])]),
}


def answer(task: str, texts: list[str]) -> dict:
    """The right answer for the responses as shown."""
    best_first = sorted(range(len(texts)), key=lambda p: QUALITY.index(texts[p]))
    if task == "pairwise":
        return {"choice": "left" if best_first[0] == 0 else "right"}
    if task == "ranking":
        return {"ranking": best_first}
    if task == "rating":
        return {"ratings": {"x": [{"best": 5, "middle": 3, "worst": 1}[t] for t in texts]}}
    return {"target": texts.index("worst"), "critique": "wrong", "revision": "fixed"}


def judged_project(client, server_token, task: str):
    extra, items = TASKS[task]
    body = [{"prompt": p, "responses": r} for p, r in items]
    s = make_setup(client, server_token, n_annotators=1, items=body, task=task, **extra)
    while (r := client.post(s.url("/next"), headers=s.ann())).status_code == 200:
        view = r.json()
        label = answer(task, [x["text"] for x in view["responses"]])
        url = f"{API}/assignments/{view['assignment_id']}/submit"
        assert client.post(url, json=label, headers=s.ann()).status_code == 200
    return s


def comparisons(task: str, pairs: bool) -> list[tuple]:
    """(prompt, chosen, rejected) the judgments stand for."""
    if task == "pairwise":
        return [("q", "best", "worst"), (CONVERSATION, "best", "worst")]
    if task == "critique":
        return [("q", "fixed", "worst")]
    if pairs:
        return [("q", "best", "middle"), ("q", "best", "worst"), ("q", "middle", "worst")]
    return [("q", "best", "worst")]


def expected(task: str, form: str, pairs: bool) -> list[tuple]:
    if form == "prefloop":
        if task == "critique":
            return [("Critique", "q", "worst", "wrong", "fixed")]
        if task in ("ranking", "rating") and not pairs:
            return [("Rating", "q", QUALITY, [3.0, 2.0, 1.0] if task == "ranking" else [5, 3, 1])]
    if form == "trl-kto":
        return [("Unpaired", p, text, good) for p, c, r in comparisons(task, pairs)
                for text, good in ((c, True), (r, False))]  # fmt: skip
    if form == "trl-implicit":  # text prompts travel as one user message
        return [
            ("Comparison", [{"role": "user", "content": p}] if isinstance(p, str) else p, c, r)
            for p, c, r in comparisons(task, pairs)
        ]
    return [("Comparison", *pair) for pair in comparisons(task, pairs)]


def content(record) -> tuple:
    if isinstance(record, Comparison):
        return ("Comparison", record.prompt, record.chosen, record.rejected)
    if isinstance(record, Rating):
        return ("Rating", record.prompt, record.responses, record.scores)
    if isinstance(record, Critique):
        return ("Critique", record.prompt, record.response, record.text, record.revision)
    assert isinstance(record, Unpaired)
    return ("Unpaired", record.prompt, record.completion, record.label)


@pytest.mark.parametrize("task", list(TASKS))
def test_every_export_form_loads_back_as_the_judged_records(client, server_token, tmp_path, task):
    s = judged_project(client, server_token, task)
    judge = f"human:{s.annotators[0]['id']}"
    for form in FORMS:
        for pairs in (False, True):
            r = client.get(
                s.url("/export"), params={"form": form, "pairs": pairs}, headers=s.admin()
            )
            path = tmp_path / f"{form}-{pairs}.jsonl"
            path.write_bytes(r.content)
            records = load_records(path)
            assert sorted(map(content, records), key=repr) == sorted(
                expected(task, form, pairs), key=repr
            ), (form, pairs)
            assert {r.annotator for r in records} == {judge}
            assert all(r.metadata["annotator_id"] == s.annotators[0]["id"] for r in records)
            assert all(r.metadata["judge_kind"] == "human" for r in records)


@pytest.mark.parametrize(
    ("form", "command"),
    [
        ("prefloop", ["train-rm"]),
        ("trl-implicit", ["train", "dpo"]),
        ("trl-kto", ["train", "kto"]),
    ],
)
def test_exports_train_unchanged(
    client, server_token, sqlite_url, tmp_path, world, tiny_model_dir, form, command
):
    """Judged review-world texts, exported by the CLI, go straight into the training CLI."""
    corpus = world.corpus(8, seed=3)
    items = [
        {"prompt": p, "responses": [a, b]} for (p, a), (_, b) in zip(corpus[::2], corpus[1::2])
    ]
    s = make_setup(client, server_token, n_annotators=1, items=items)
    while (r := client.post(s.url("/next"), headers=s.ann())).status_code == 200:
        url = f"{API}/assignments/{r.json()['assignment_id']}/submit"
        assert client.post(url, json={"choice": "left"}, headers=s.ann()).status_code == 200
    data = tmp_path / f"{form}.jsonl"
    rows = export_command(s.project["id"], str(data), db=sqlite_url, form=form)
    assert rows == (8 if form == "trl-kto" else 4)
    out = tmp_path / "out"
    args = [*command, str(tiny_model_dir), str(data), "--out", str(out),
            "--epochs", "1", "--batch-size", "8", "--lr", "1e-3"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 steps" in result.output and (out / "model.safetensors").exists()
    assert json.loads((out / "run_config.json").read_text())["config"]["data"] == str(data)


PROMPT, RESPONSE_1 = ["body", "items", 0, "prompt"], ["body", "items", 0, "responses", 1, "text"]


@pytest.mark.parametrize(
    ("item", "loc", "msg"),
    [
        ({"prompt": "", "responses": ["a", "b"]}, PROMPT, "1..100000"),
        ({"prompt": [], "responses": ["a", "b"]}, PROMPT, "1..200"),
        ({"prompt": "q", "responses": ["a", ""]}, RESPONSE_1, "at least 1"),
        ({"prompt": "q", "responses": ["a", {"text": ""}]}, RESPONSE_1, "at least 1"),
    ],
)
def test_items_no_export_could_carry_are_422_naming_the_field(client, server_token, item, loc, msg):
    s = make_setup(client, server_token, n_annotators=0)
    r = client.post(s.url("/items"), json={"items": [item]}, headers=s.admin())
    assert r.status_code == 422
    [error] = r.json()["detail"]
    assert error["loc"] == loc and msg in error["msg"]


def test_an_ai_rating_must_score_every_response(client, server_token):
    s = make_setup(client, server_token, n_annotators=0, task="rating", aspects=["x"],
                   items=[{"prompt": "q", "responses": QUALITY}])  # fmt: skip
    judge = {"name": "j", "model": "m", "prompt_version": "v"}
    body = {"item_id": 1, "judge": judge, "order": [0, 1], "label": {"ratings": {"x": [5, 1]}}}
    r = client.post(s.url("/ai-judgments"), json=body, headers=s.admin())
    assert (r.status_code, r.json()["detail"]) == (
        422,
        "a rating judgment must score every response: 'order' lists all",
    )
    body |= {"order": [2, 0, 1], "label": {"ratings": {"x": [1, 5, 3]}}}
    assert client.post(s.url("/ai-judgments"), json=body, headers=s.admin()).status_code == 200
    (row,) = [
        json.loads(line)
        for line in client.get(s.url("/export"), headers=s.admin()).text.splitlines()
    ]
    assert row["scores"] == [5.0, 3.0, 1.0]


def test_a_critique_needs_its_text_to_export_and_load_back(client, server_token, tmp_path):
    """A revision alone is refused; critiques with a revision, human and AI, load back."""
    s = make_setup(client, server_token, n_annotators=1, task="critique",
                   items=[{"prompt": "q", "responses": ["best", "worst"]}])  # fmt: skip
    view = client.post(s.url("/next"), headers=s.ann()).json()
    worst = [r["text"] for r in view["responses"]].index("worst")
    url = f"{API}/assignments/{view['assignment_id']}/submit"
    refused = client.post(url, json={"target": worst, "revision": "fixed"}, headers=s.ann())
    assert (refused.status_code, refused.json()["detail"]) == (
        422,
        "critique needs 'critique' text; a 'revision' alone is not enough",
    )
    label = {"target": worst, "critique": "wrong", "revision": "fixed"}
    assert client.post(url, json=label, headers=s.ann()).status_code == 200
    judge = {"name": "critic", "model": "m", "prompt_version": "v"}
    body = {"item_id": 1, "judge": judge, "order": [1, 0], "label": {"target": 0, "revision": "x"}}
    assert client.post(s.url("/ai-judgments"), json=body, headers=s.admin()).status_code == 422
    body["label"] |= {"critique": "too blunt"}
    assert client.post(s.url("/ai-judgments"), json=body, headers=s.admin()).status_code == 200
    path = tmp_path / "critiques.jsonl"
    path.write_bytes(client.get(s.url("/export"), headers=s.admin()).content)
    assert sorted(map(content, load_records(path)), key=repr) == [
        ("Critique", "q", "worst", "too blunt", "x"),
        ("Critique", "q", "worst", "wrong", "fixed"),
    ]
