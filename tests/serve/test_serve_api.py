"""HTTP API: every endpoint, happy path and bad input (clear 4xx, nothing stored)."""

from __future__ import annotations

import pytest
from serve_helpers import bearer, make_setup, pair_items
from sqlalchemy import func, select, text
from sqlalchemy.exc import DatabaseError

from prefloop.serve.db import AuditEntry, Credential, Judgment

API = "/api/v1"


def count(engine, model) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def next_item(s, k: int = 0):
    return s.client.post(s.url("/next"), headers=s.ann(k))


def test_tokens_are_stored_hashed_and_init_prints_once(engine, client, server_token):
    from prefloop.serve.cli import init_admin

    assert init_admin(engine) is None  # no second admin token, ever
    s = make_setup(client, server_token, n_annotators=1)
    with engine.connect() as conn:
        hashes = conn.execute(select(Credential.token_hash)).scalars().all()
    for token in (server_token, s.project["admin_token"], s.annotators[0]["token"]):
        assert token not in hashes
        assert len(token) > 40
    assert len(hashes) == 3


@pytest.mark.parametrize(
    "headers, status, message",
    [
        ({}, 401, "missing bearer token"),
        (bearer("pfu_wrong"), 401, "invalid or revoked token"),
        ({"Authorization": "Basic abc"}, 401, "missing bearer token"),
    ],
)
def test_bad_tokens_are_401(client, server_token, headers, status, message):
    r = client.get(f"{API}/projects", headers=headers)
    assert (r.status_code, r.json()["detail"]) == (status, message)


def test_roles_are_enforced(client, server_token):
    s = make_setup(client, server_token, n_annotators=1, items=pair_items(1))
    other = make_setup(client, server_token, n_annotators=1, items=pair_items(1))
    r = client.post(f"{API}/projects", json={"name": "x", "task": "pairwise"}, headers=s.admin())
    assert (r.status_code, r.json()["detail"]) == (403, "server admin token required")
    r = client.post(f"{API}/annotators", json={"name": "x"}, headers=s.ann())
    assert r.status_code == 403
    # a project admin cannot touch another project
    r = client.post(other.url("/items"), json={"items": pair_items(1)}, headers=s.admin())
    assert (r.status_code, r.json()["detail"]) == (403, "not an admin of this project")
    # an annotator sees only assigned projects and cannot pull from others
    listed = client.get(f"{API}/projects", headers=s.ann()).json()
    assert [p["id"] for p in listed] == [s.project["id"]]
    r = client.post(other.url("/next"), headers=s.ann())
    assert (r.status_code, r.json()["detail"]) == (403, "not assigned to this project")
    assert client.get(other.url(""), headers=s.ann()).status_code == 403
    # another project's item is unknown here, even to this project's admin
    theirs = other.client.post(
        other.url("/items"), json={"items": pair_items(1)}, headers=other.admin()
    )
    item_id = theirs.json()["ids"][0]
    r = client.get(s.url(f"/items/{item_id}"), headers=s.admin())
    assert (r.status_code, r.json()["detail"]) == (
        404,
        f"item {item_id} not found in project {s.project['id']}",
    )
    judge = {"name": "j", "model": "m", "prompt_version": "v"}
    ai = {"item_id": item_id, "judge": judge, "label": {"choice": "left"}}
    assert client.post(s.url("/ai-judgments"), json=ai, headers=s.admin()).status_code == 404
    # annotators cannot read admin data
    assert client.get(s.url("/judgments"), headers=s.ann()).status_code == 403
    assert client.get(s.url("/export"), headers=s.ann()).status_code == 403
    assert client.get(f"{API}/projects/999", headers=s.admin()).status_code == 404


def test_project_create_validation(client, server_token, engine):
    bad = [
        {"name": "", "task": "pairwise"},
        {"name": "p", "task": "essay"},
        {"name": "p", "task": "rating"},  # no aspects
        {"name": "p", "task": "pairwise", "scale_min": 5, "scale_max": 1},
        {"name": "p", "task": "pairwise", "redundancy": 0},
        {"name": "p", "task": "pairwise", "rule": "oracle"},
        {"name": "p", "task": "pairwise", "unknown": 1},
    ]
    for body in bad:
        r = client.post(f"{API}/projects", json=body, headers=bearer(server_token))
        assert r.status_code == 422, body
    r = client.post(f"{API}/projects", content=b"{not json", headers=bearer(server_token))
    assert r.status_code == 422
    from prefloop.serve.db import Project

    assert count(engine, Project) == 0


def test_project_read_update_and_list(client, server_token):
    s = make_setup(client, server_token, n_annotators=1)
    r = client.patch(
        s.url(""), json={"guideline_version": "2", "rule": "disagreement"}, headers=s.admin()
    )
    assert r.status_code == 200
    assert (r.json()["guideline_version"], r.json()["rule"]) == ("2", "disagreement")
    assert client.get(s.url(""), headers=s.ann()).json()["guideline_version"] == "2"
    assert client.patch(s.url(""), json={"rule": "x"}, headers=s.admin()).status_code == 422
    assert client.patch(s.url(""), json={"rule": "random"}, headers=s.ann()).status_code == 403
    assert len(client.get(f"{API}/projects", headers=bearer(server_token)).json()) == 1
    assert client.get(f"{API}/me", headers=s.ann()).json()["role"] == "annotator"


def test_items_push_validation_and_idempotency(client, server_token, engine):
    from prefloop.serve.db import Item

    s = make_setup(client, server_token, n_annotators=0)
    push = lambda items: client.post(s.url("/items"), json={"items": items}, headers=s.admin())  # noqa: E731
    bad = [
        [{"prompt": "p", "responses": ["only one"]}],
        [{"prompt": "p", "responses": ["a"] * 17}],
        [{"prompt": "x" * 100_001, "responses": ["a", "b"]}],
        [{"prompt": "p", "responses": ["a", "y" * 100_001]}],
        [{"prompt": "p", "responses": ["a", "b"], "rewards": [[1.0]]}],
        [{"prompt": [], "responses": ["a", "b"]}],
        [{"prompt": [{"role": "user"}], "responses": ["a", "b"]}],
        [
            {
                "prompt": "p",
                "responses": [{"text": "a", "features": [1]}, {"text": "b", "features": [1, 2]}],
            }
        ],
        [{"external_id": "e", "prompt": "p", "responses": ["a", "b"]}] * 2,
        [],
    ]
    for items in bad:
        assert push(items).status_code == 422, items
    assert count(engine, Item) == 0
    first = push([{"external_id": "e1", "prompt": "p", "responses": ["a", "b"]}]).json()
    again = push([{"external_id": "e1", "prompt": "p", "responses": ["a", "b"]}]).json()
    assert first["ids"] == again["ids"] and (first["created"], again["created"]) == (1, 0)
    conv = [{"role": "user", "content": "hi"}]
    r = push(
        [
            {
                "prompt": conv,
                "responses": [{"text": "a", "source": "m1"}, "b"],
                "rewards": [[1, 2], [2, 1]],
            }
        ]
    )
    item = client.get(s.url(f"/items/{r.json()['ids'][0]}"), headers=s.admin()).json()
    assert item["prompt"] == conv and item["responses"][0] == {"text": "a", "source": "m1"}
    assert item["judgments"] == 0
    r = client.put(
        s.url(f"/items/{item['id']}/rewards"), json=[[0, 1], [1, 0], [5, 5]], headers=s.admin()
    )
    assert r.json()["rewards"] == [[0, 1], [1, 0], [5, 5]]
    assert (
        client.put(s.url(f"/items/{item['id']}/rewards"), json=[[0]], headers=s.admin()).status_code
        == 422
    )
    assert client.get(s.url("/items/9999"), headers=s.admin()).status_code == 404
    assert count(engine, Item) == 2


def test_oversized_body_is_413(client, server_token):
    s = make_setup(client, server_token, n_annotators=0)
    r = client.post(s.url("/items"), content=b" " * (16 * 1024 * 1024 + 1), headers=s.admin())
    assert (r.status_code, r.json()["detail"]) == (413, "body larger than 16777216 bytes")


def test_annotators_see_blind_shuffled_items_and_submit_once(client, server_token, engine):
    items = [
        {
            "prompt": "p",
            "responses": [{"text": "A", "source": "gpt"}, {"text": "B", "source": "llama"}],
        }
    ]
    s = make_setup(client, server_token, n_annotators=1, items=items * 40)
    orders = set()
    for _ in range(40):
        view = next_item(s).json()
        assert "source" not in str(view) and "gpt" not in str(view)
        order = [r["text"] for r in view["responses"]]
        orders.add(tuple(order))
        r = client.post(
            f"{API}/assignments/{view['assignment_id']}/submit",
            json={"choice": "left"},
            headers=s.ann(),
        )
        j = r.json()
        # the stored preference is for the response shown on the left, whichever that was
        assert j["preference"] == (1.0 if order[0] == "A" else 0.0)
        assert j["display_order"] == ([0, 1] if order[0] == "A" else [1, 0])
    assert orders == {("A", "B"), ("B", "A")}
    assert next_item(s).status_code == 204
    assert count(engine, Judgment) == 40


def test_submission_rules(client, server_token, engine):
    s = make_setup(client, server_token, n_annotators=2, items=pair_items(1))
    view = next_item(s).json()
    submit = lambda body, k=0: client.post(  # noqa: E731
        f"{API}/assignments/{view['assignment_id']}/submit", json=body, headers=s.ann(k)
    )
    for body, detail in [
        ({}, "pairwise label needs exactly one of 'choice' or 'preference'"),
        (
            {"choice": "left", "preference": 0.3},
            "pairwise label needs exactly one of 'choice' or 'preference'",
        ),
        ({"ranking": [0, 1]}, "pairwise label does not take ['ranking']"),
    ]:
        r = submit(body)
        assert (r.status_code, r.json()["detail"]) == (422, detail)
    assert submit({"choice": "middle"}).status_code == 422
    assert submit({"preference": 1.5}).status_code == 422
    assert submit({"choice": "left", "extra": 1}).status_code == 422
    r = submit({"choice": "left"}, k=1)  # somebody else's assignment
    assert (r.status_code, r.json()["detail"]) == (
        404,
        f"assignment {view['assignment_id']} not found",
    )
    assert (
        client.post(
            f"{API}/assignments/999/submit", json={"choice": "left"}, headers=s.ann()
        ).status_code
        == 404
    )
    assert count(engine, Judgment) == 0
    first = submit({"preference": 0.75})
    assert first.status_code == 200 and not first.json()["duplicate"]
    again = submit({"preference": 0.75})
    assert (
        again.status_code == 200
        and again.json()["duplicate"]
        and again.json()["id"] == first.json()["id"]
    )
    r = submit({"preference": 0.25})
    assert r.status_code == 409
    assert count(engine, Judgment) == 1
    assert (
        client.post(f"{API}/assignments/{view['assignment_id']}/skip", headers=s.ann()).status_code
        == 409
    )


def test_redundancy_and_never_twice(client, server_token, engine):
    s = make_setup(client, server_token, n_annotators=3, items=pair_items(2), redundancy=2)
    seen = {k: [] for k in range(3)}
    for _ in range(3):
        for k in range(3):
            r = next_item(s, k)
            if r.status_code == 204:
                continue
            view = r.json()
            seen[k].append(view["item_id"])
            client.post(
                f"{API}/assignments/{view['assignment_id']}/submit",
                json={"choice": "tie"},
                headers=s.ann(k),
            )
    for items in seen.values():
        assert len(items) == len(set(items))
    assert sum(len(v) for v in seen.values()) == 4  # 2 items x R=2
    with engine.connect() as conn:
        per_item = (
            conn.execute(select(func.count()).select_from(Judgment).group_by(Judgment.item_id))
            .scalars()
            .all()
        )
    assert per_item == [2, 2]


def test_skip_discard_and_drafts_are_not_labels(client, server_token, engine):
    s = make_setup(client, server_token, n_annotators=2, items=pair_items(2))
    view = next_item(s).json()
    assert next_item(s).json()["assignment_id"] == view["assignment_id"]  # resumes the open one
    draft = client.put(
        f"{API}/assignments/{view['assignment_id']}/draft",
        json={"choice": "right"},
        headers=s.ann(),
    )
    assert draft.status_code == 204
    assert next_item(s).json()["draft"]["choice"] == "right"
    assert (
        client.post(f"{API}/assignments/{view['assignment_id']}/skip", headers=s.ann()).status_code
        == 204
    )
    second = next_item(s).json()
    assert second["item_id"] != view["item_id"]  # a skipped item never comes back to the same one
    assert (
        client.post(
            f"{API}/assignments/{second['assignment_id']}/discard", headers=s.ann()
        ).status_code
        == 204
    )
    assert next_item(s).status_code == 204
    progress = client.get(s.url("/progress"), headers=s.ann()).json()
    assert progress == {"submitted": 0, "skipped": 2, "open": 0, "available": 0}
    assert client.get(s.url("/progress"), headers=s.ann(1)).json()["available"] == 2  # slots freed
    assert count(engine, Judgment) == 0
    r = client.put(
        f"{API}/assignments/{view['assignment_id']}/draft", json={"choice": "left"}, headers=s.ann()
    )
    assert (r.status_code, r.json()["detail"]) == (409, "assignment is skipped")


def test_expired_lease_frees_the_slot(client, server_token, engine):
    s = make_setup(client, server_token, n_annotators=2, items=pair_items(1))
    view = next_item(s).json()
    assert next_item(s, 1).status_code == 204
    with engine.begin() as conn:
        conn.execute(text("UPDATE assignments SET expires_at = '2000-01-01 00:00:00'"))
    other = next_item(s, 1).json()
    assert other["item_id"] == view["item_id"]
    r = client.post(
        f"{API}/assignments/{view['assignment_id']}/submit",
        json={"choice": "left"},
        headers=s.ann(),
    )
    assert (r.status_code, r.json()["detail"]) == (409, "assignment is expired")
    ok = client.post(
        f"{API}/assignments/{other['assignment_id']}/submit",
        json={"choice": "left"},
        headers=s.ann(1),
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "task, extra, label, canonical",
    [
        ("ranking", {}, {"ranking": [2, 0, 1]}, "ranking"),
        (
            "rating",
            {"aspects": ["help", "safe"]},
            {"ratings": {"help": [1, 5, 3], "safe": [2, 2, 2]}},
            "ratings",
        ),
        ("critique", {}, {"target": 1, "critique": "too long", "revision": "short"}, "target"),
    ],
)
def test_other_tasks_store_canonical_labels(client, server_token, task, extra, label, canonical):
    s = make_setup(
        client, server_token, n_annotators=1, items=pair_items(1, k=3), task=task, **extra
    )
    view = next_item(s).json()
    order = [int(r["text"].split(".")[1]) for r in view["responses"]]
    j = client.post(
        f"{API}/assignments/{view['assignment_id']}/submit", json=label, headers=s.ann()
    ).json()
    assert j["display_order"] == order and j["raw_label"] == label
    if task == "ranking":
        assert j["label"]["ranking"] == [order[p] for p in label["ranking"]]
    elif task == "rating":
        assert j["label"]["ratings"]["help"] == [
            label["ratings"]["help"][order.index(i)] for i in range(3)
        ]
    else:
        assert j["label"]["target"] == order[1]
    assert canonical in j["label"]


NO_CRITIQUE = "critique needs 'critique' text; a 'revision' alone is not enough"


@pytest.mark.parametrize(
    "task, extra, label, detail",
    [
        (
            "ranking",
            {},
            {"ranking": [0, 0, 1]},
            "ranking must list every position 0..2 exactly once",
        ),
        (
            "rating",
            {"aspects": ["help"]},
            {"ratings": {"help": [1, 9, 3]}},
            "scores must lie in [1, 5]",
        ),
        (
            "rating",
            {"aspects": ["help"]},
            {"ratings": {"other": [1, 1, 1]}},
            "ratings must cover exactly the aspects ['help']",
        ),
        ("critique", {}, {"target": 1}, NO_CRITIQUE),
        ("critique", {}, {"target": 1, "revision": "short"}, NO_CRITIQUE),
        ("critique", {}, {"target": 1, "critique": "", "revision": "short"}, NO_CRITIQUE),
        (
            "critique",
            {},
            {"target": 7, "critique": "x"},
            "critique needs a 'target' position among the shown responses",
        ),
    ],
)
def test_other_tasks_reject_bad_labels(client, server_token, engine, task, extra, label, detail):
    s = make_setup(
        client, server_token, n_annotators=1, items=pair_items(1, k=3), task=task, **extra
    )
    view = next_item(s).json()
    r = client.post(
        f"{API}/assignments/{view['assignment_id']}/submit", json=label, headers=s.ann()
    )
    assert (r.status_code, r.json()["detail"]) == (422, detail)
    assert count(engine, Judgment) == 0


def test_ai_judges_and_async_reading(client, server_token):
    s = make_setup(client, server_token, n_annotators=1, items=pair_items(2, k=3))
    judge = {"name": "critic", "model": "m-7b", "prompt_version": "v3"}
    post = lambda body: client.post(s.url("/ai-judgments"), json=body, headers=s.admin())  # noqa: E731
    a = post({"item_id": 1, "judge": judge, "order": [2, 0], "label": {"choice": "left"}})
    assert a.status_code == 200
    assert (a.json()["pair"], a.json()["preference"], a.json()["judge_kind"]) == ([0, 2], 0.0, "ai")
    b = post(
        {
            "item_id": 1,
            "judge": {**judge, "prompt_version": "v4"},
            "order": [0, 1],
            "label": {"choice": "tie"},
        }
    )
    assert b.status_code == 200 and b.json()["judge_id"] != a.json()["judge_id"]
    assert post(
        {"item_id": 1, "judge": judge, "order": [2, 0], "label": {"choice": "left"}}
    ).json()["duplicate"]
    assert (
        post(
            {"item_id": 1, "judge": judge, "order": [2, 0], "label": {"choice": "right"}}
        ).status_code
        == 409
    )
    assert post({"item_id": 99, "judge": judge, "label": {"choice": "left"}}).status_code == 404
    assert (
        post(
            {"item_id": 2, "judge": judge, "order": [0, 5], "label": {"choice": "left"}}
        ).status_code
        == 422
    )
    assert (
        post({"item_id": 2, "judge": {"name": "x"}, "label": {"choice": "left"}}).status_code == 422
    )
    page = client.get(
        s.url("/judgments"), params={"after": 0, "limit": 1}, headers=s.admin()
    ).json()
    rest = client.get(
        s.url("/judgments"), params={"after": page[-1]["id"]}, headers=s.admin()
    ).json()
    assert [j["id"] for j in page + rest] == [a.json()["id"], b.json()["id"]]
    assert (
        client.get(s.url("/judgments"), params={"limit": 0}, headers=s.admin()).status_code == 422
    )


def test_an_ai_critique_needs_critique_text(client, server_token, engine):
    s = make_setup(client, server_token, n_annotators=0, items=pair_items(1, k=3), task="critique")
    judge = {"name": "critic", "model": "m-7b", "prompt_version": "v3"}
    body = {"item_id": 1, "judge": judge, "label": {"target": 1, "revision": "short"}}
    r = client.post(s.url("/ai-judgments"), json=body, headers=s.admin())
    assert (r.status_code, r.json()["detail"]) == (422, NO_CRITIQUE)
    assert count(engine, Judgment) == 0
    body["label"]["critique"] = "too long"
    assert client.post(s.url("/ai-judgments"), json=body, headers=s.admin()).status_code == 200


def test_removed_annotator_keeps_judgments(client, server_token, engine):
    s = make_setup(client, server_token, n_annotators=1, items=pair_items(2))
    view = next_item(s).json()
    client.post(
        f"{API}/assignments/{view['assignment_id']}/submit",
        json={"choice": "left"},
        headers=s.ann(),
    )
    aid = s.annotators[0]["id"]
    assert client.delete(f"{API}/annotators/{aid}", headers=bearer(server_token)).status_code == 204
    assert next_item(s).status_code == 401
    listed = client.get(f"{API}/annotators", headers=bearer(server_token)).json()
    assert listed == [{"id": aid, "name": s.annotators[0]["name"], "deleted": True}]
    assert count(engine, Judgment) == 1
    assert len(client.get(s.url("/export"), headers=s.admin()).text.splitlines()) == 1
    assert (
        client.post(f"{API}/annotators/{aid}/token", headers=bearer(server_token)).status_code
        == 409
    )
    assert (
        client.post(s.url("/members"), json={"annotator_id": aid}, headers=s.admin()).status_code
        == 409
    )
    assert client.delete(f"{API}/annotators/999", headers=bearer(server_token)).status_code == 404


def test_members_and_token_rotation(client, server_token):
    s = make_setup(client, server_token, n_annotators=1, items=pair_items(1))
    aid = s.annotators[0]["id"]
    assert [m["id"] for m in client.get(s.url("/members"), headers=s.admin()).json()] == [aid]
    new = client.post(f"{API}/annotators/{aid}/token", headers=bearer(server_token)).json()["token"]
    assert next_item(s).status_code == 401
    assert client.post(s.url("/next"), headers=bearer(new)).status_code == 200
    assert client.delete(s.url(f"/members/{aid}"), headers=s.admin()).status_code == 204
    assert client.post(s.url("/next"), headers=bearer(new)).status_code == 403
    assert client.delete(s.url(f"/members/{aid}"), headers=s.admin()).status_code == 404
    assert (
        client.post(s.url("/members"), json={"annotator_id": 999}, headers=s.admin()).status_code
        == 404
    )
    assert client.post(s.url("/members"), json={}, headers=s.admin()).status_code == 422


def test_audit_log_is_append_only(client, server_token, engine):
    s = make_setup(client, server_token, n_annotators=1, items=pair_items(1))
    view = next_item(s).json()
    client.post(
        f"{API}/assignments/{view['assignment_id']}/submit",
        json={"choice": "left"},
        headers=s.ann(),
    )
    entries = client.get(s.url("/audit"), headers=s.admin()).json()
    actions = [e["action"] for e in entries]
    assert actions == ["create_project", "add_member", "add_items", "submit"]
    assert entries[-1]["actor"] == f"annotator:{s.annotators[0]['id']}"
    everything = client.get(f"{API}/audit", headers=bearer(server_token)).json()
    assert [e["action"] for e in everything][:2] == ["init", "create_project"]
    assert client.get(f"{API}/audit", headers=s.admin()).status_code == 403
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    assert count(engine, AuditEntry) == len(everything)


def test_an_expired_lease_can_still_submit_while_a_slot_is_free(client, server_token, engine):
    s = make_setup(client, server_token, n_annotators=1, items=pair_items(1))
    view = next_item(s).json()
    with engine.begin() as conn:
        conn.execute(text("UPDATE assignments SET expires_at = '2000-01-01 00:00:00'"))
    assert next_item(s).status_code == 204  # expires the lease; the item was seen already
    with engine.connect() as conn:
        assert conn.execute(text("SELECT claimed FROM items")).scalar_one() == 0
    url = f"{API}/assignments/{view['assignment_id']}/submit"
    assert client.post(url, json={"choice": "left"}, headers=s.ann()).status_code == 200
    with engine.connect() as conn:
        assert conn.execute(text("SELECT claimed FROM items")).scalar_one() == 1
        assert conn.execute(text("SELECT status FROM assignments")).scalar_one() == "submitted"
