"""Export: prefloop records and TRL forms, provenance beside training columns, files round-trip."""

from __future__ import annotations

import json

from serve_helpers import bearer, make_setup

from prefloop.data import Comparison, Rating, load_records
from prefloop.serve.cli import export_command, import_command

API = "/api/v1"
PROVENANCE = {
    "annotator_id",
    "raw_label",
    "guideline_version",
    "judged_at",
    "judgment_id",
    "display_order",
}


def judge_all(s, answer) -> None:
    """Each annotator answers every item; ``answer(texts_shown) -> label``."""
    for k in range(len(s.annotators)):
        while (r := s.client.post(s.url("/next"), headers=s.ann(k))).status_code == 200:
            view = r.json()
            label = answer([x["text"] for x in view["responses"]])
            ok = s.client.post(
                f"{API}/assignments/{view['assignment_id']}/submit", json=label, headers=s.ann(k)
            )
            assert ok.status_code == 200, ok.text


def export(s, **params) -> list[dict]:
    r = s.client.get(s.url("/export"), params=params, headers=s.admin())
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in r.text.splitlines()]
    return sorted(rows, key=lambda row: row["item_id"])  # stable: pairs keep their order


def prefer_good(texts):
    return {"choice": "left" if texts[0] == "good" else "right"}


def test_pairwise_exports(client, server_token):
    items = [
        {"prompt": "q", "responses": ["good", "bad"]},
        {"prompt": [{"role": "user", "content": "hi"}], "responses": ["good", "bad"]},
    ]
    s = make_setup(client, server_token, n_annotators=1, items=items, guideline_version="g7")
    judge_all(s, prefer_good)
    pref = export(s)
    assert [(r["chosen"], r["rejected"], r["strength"]) for r in pref] == [("good", "bad", 1.0)] * 2
    assert set(pref[0]) >= PROVENANCE and pref[0]["guideline_version"] == "g7"
    assert pref[0]["annotator_id"] == s.annotators[0]["id"] and pref[0]["judge_kind"] == "human"
    explicit = export(s, form="trl-explicit")
    assert (explicit[0]["prompt"], explicit[0]["chosen"], explicit[0]["rejected"]) == (
        "q",
        "good",
        "bad",
    )
    assert explicit[1]["chosen"] == [{"role": "assistant", "content": "good"}]
    implicit = export(s, form="trl-implicit")
    assert "prompt" not in implicit[0] and implicit[0]["chosen"] == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "good"},
    ]
    assert implicit[1]["rejected"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "bad"},
    ]
    kto = export(s, form="trl-kto")
    assert [(r["completion"], r["label"]) for r in kto][:2] == [("good", True), ("bad", False)]
    assert all(set(r) >= PROVENANCE for r in explicit + implicit + kto)
    assert (
        client.get(s.url("/export"), params={"form": "csv"}, headers=s.admin()).status_code == 422
    )


def test_ties_and_both_bad(client, server_token):
    s = make_setup(
        client, server_token, n_annotators=1, items=[{"prompt": "q", "responses": ["x", "y"]}] * 2
    )
    answers = iter([{"choice": "tie"}, {"choice": "both_bad"}])
    judge_all(s, lambda _t: next(answers))
    assert [r["strength"] for r in export(s)] == [0.5, 0.5]
    assert export(s, form="trl-explicit") == []
    assert len(export(s, form="trl-explicit", include_ties=True)) == 1  # the tie; never both-bad
    kto = export(s, form="trl-kto")
    assert [(r["completion"], r["label"]) for r in kto] == [("x", False), ("y", False)]


def test_rankings_expand_to_pairs_on_request(client, server_token):
    s = make_setup(
        client,
        server_token,
        n_annotators=1,
        task="ranking",
        items=[{"prompt": "q", "responses": ["r1", "r2", "r3"]}],
    )
    judge_all(
        s, lambda texts: {"ranking": sorted(range(3), key=lambda p: texts[p])}
    )  # r1 > r2 > r3
    (rating,) = export(s)
    assert rating["responses"] == ["r1", "r2", "r3"] and rating["scores"] == [3.0, 2.0, 1.0]
    pairs = export(s, pairs=True)
    assert {(p["chosen"], p["rejected"]) for p in pairs} == {
        ("r1", "r2"),
        ("r1", "r3"),
        ("r2", "r3"),
    }
    assert [(p["chosen"], p["rejected"]) for p in export(s, form="trl-explicit")] == [("r1", "r3")]
    assert len(export(s, form="trl-explicit", pairs=True)) == 3
    assert all(p["raw_label"]["ranking"] for p in pairs)


def test_critique_and_rating_records(client, server_token):
    c = make_setup(
        client,
        server_token,
        n_annotators=1,
        task="critique",
        items=[{"prompt": "q", "responses": ["a", "b"]}],
    )
    judge_all(
        c, lambda texts: {"target": texts.index("a"), "critique": "wrong", "revision": "fixed"}
    )
    (crit,) = export(c)
    assert (crit["response"], crit["text"], crit["revision"]) == ("a", "wrong", "fixed")
    assert [(r["chosen"], r["rejected"]) for r in export(c, form="trl-explicit")] == [
        ("fixed", "a")
    ]
    r = make_setup(
        client,
        server_token,
        n_annotators=1,
        task="rating",
        aspects=["x", "y"],
        items=[{"prompt": "q", "responses": ["a", "b"]}],
    )
    judge_all(
        r, lambda texts: {"ratings": {"x": [5 if t == "a" else 1 for t in texts], "y": [3, 3]}}
    )
    (rating,) = export(r)
    assert rating["scores"] == [4.0, 2.0] and rating["aspect_scores"] == {
        "x": [5.0, 1.0],
        "y": [3.0, 3.0],
    }


def test_ai_and_human_filter(client, server_token):
    s = make_setup(
        client, server_token, n_annotators=1, items=[{"prompt": "q", "responses": ["good", "bad"]}]
    )
    judge_all(s, prefer_good)
    judge = {"name": "j", "model": "m", "prompt_version": "v1"}
    client.post(
        s.url("/ai-judgments"),
        json={"item_id": 1, "judge": judge, "label": {"preference": 0.8}},
        headers=s.admin(),
    )
    assert [r["judge_kind"] for r in export(s)] == ["human", "ai"]
    (ai,) = export(s, judges="ai")
    assert (ai["ai_model"], ai["ai_prompt_version"], ai["strength"]) == ("m", "v1", 0.8)
    assert len(export(s, judges="human")) == 1


def test_cli_import_and_export_files(tmp_path, sqlite_url, engine, client, server_token):
    s = make_setup(client, server_token, n_annotators=1)
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"prompt": "q", "responses": ["good", "bad"]}) + "\n")
    assert import_command(str(items), s.project["id"], db=sqlite_url) == 1
    assert import_command(str(items), s.project["id"], db=sqlite_url) == 0  # same line again
    from prefloop.data import save_records

    records = tmp_path / "records.jsonl"
    save_records([Rating("p", ["good", "bad", "worse"], [3, 2, 1])], records)
    assert import_command(str(records), s.project["id"], db=sqlite_url) == 1
    rank = ["good", "bad", "worse"].index
    judge_all(s, lambda texts: {"choice": "left" if rank(texts[0]) < rank(texts[1]) else "right"})
    out = tmp_path / "out.jsonl"
    assert export_command(s.project["id"], str(out), db=sqlite_url) == 2
    loaded = load_records(out)
    assert all(isinstance(r, Comparison) and rank(r.chosen) < rank(r.rejected) for r in loaded)
    assert loaded[0].metadata["annotator_id"] == s.annotators[0]["id"]
    assert client.get(s.url("/export"), headers=bearer(server_token)).status_code == 200


def test_main_cli_imports_items_and_exports_judgments(client, server_token, sqlite_url, tmp_path):
    from typer.testing import CliRunner

    from prefloop.cli import app

    s = make_setup(client, server_token, n_annotators=1)
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"prompt": "q", "responses": ["good", "bad"]}) + "\n")
    project = str(s.project["id"])
    runner = CliRunner()
    imported = runner.invoke(app, ["feedback-import", str(items), "--project", project,
                                   "--db", sqlite_url])  # fmt: skip
    assert imported.exit_code == 0 and "1 new items" in imported.output
    judge_all(s, lambda texts: {"choice": "left" if texts[0] == "good" else "right"})
    out = tmp_path / "trl.jsonl"
    exported = runner.invoke(app, ["feedback-export", "--project", project, "--out", str(out),
                                   "--db", sqlite_url, "--form", "trl-explicit"])  # fmt: skip
    assert exported.exit_code == 0 and "1 rows written" in exported.output
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert (row["prompt"], row["chosen"], row["rejected"]) == ("q", "good", "bad")
