"""The numbers on a project's dashboard, computed from its human judgments.

Agreement is :func:`prefloop.serve.agreement_units.project_agreement`'s; an item's disagreement
is the mean, over its pairable agreement units, of the unit's observed disagreement (the mean
distance between two of its values: Krippendorff's per-unit D_o, so 0 = all judges agree).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prefloop.serve.agreement import METRICS
from prefloop.serve.agreement_units import judgments_by, pair_rows, project_agreement, project_units
from prefloop.serve.db import (
    Assignment,
    Item,
    Judge,
    Judgment,
    Member,
    Project,
    as_utc,
    utcnow,
)
from prefloop.serve.deliveries import delivery_status

HOURS_SHOWN = 168
MOST_DISPUTED = 10
PAIRWISE_OUTCOMES = {
    "a": "first response",
    "b": "second response",
    "tie": "tie",
    "both_bad": "both bad",
}


def progress(session: Session, project: Project, judgments: list[Judgment]) -> dict:
    """Human judgments made against the R per item wanted, and items with all R."""
    items = session.scalar(select(func.count()).where(Item.project_id == project.id)) or 0
    per_item = Counter(j.item_id for j in judgments)
    ai = session.scalar(
        select(func.count())
        .select_from(Judgment)
        .join(Judge, Judge.id == Judgment.judge_id)
        .where(Judgment.project_id == project.id, Judge.kind == "ai")
    )
    target = items * project.redundancy
    return {
        "items": items,
        "items_complete": sum(n >= project.redundancy for n in per_item.values()),
        "judgments": len(judgments),
        "target": target,
        "to_go": max(target - len(judgments), 0),
        "ai_judgments": ai or 0,
    }


def annotators(session: Session, project: Project, judgments: list[Judgment]) -> list[dict]:
    """Every member (and former member with work here): judgments, skips (skipped or
    discarded), leases that expired unanswered, and open assignments."""
    statuses: dict[int, Counter] = defaultdict(Counter)
    ours = Assignment.project_id == project.id
    for judge_id, status, n in session.execute(
        select(Assignment.judge_id, Assignment.status, func.count())
        .where(ours)
        .group_by(Assignment.judge_id, Assignment.status)
    ):
        statuses[judge_id][status] += n
    live = dict(
        session.execute(
            select(Assignment.judge_id, func.count())
            .where(ours, Assignment.status == "assigned", Assignment.expires_at > utcnow())
            .group_by(Assignment.judge_id)
        ).all()
    )
    made = Counter(j.judge_id for j in judgments)
    members = select(Member.judge_id).where(Member.project_id == project.id)
    judges = session.scalars(
        select(Judge).where(
            Judge.kind == "human", Judge.id.in_(members) | Judge.id.in_(list(statuses))
        )
    )
    rows = []
    for judge in judges:
        counts, open_now = statuses[judge.id], live.get(judge.id, 0)
        rows.append(
            {
                "annotator_id": judge.id,
                "name": judge.name,
                "removed": judge.deleted_at is not None,
                "judgments": made[judge.id],
                "skipped": counts["skipped"] + counts["discarded"],
                "expired": counts["expired"] + counts["assigned"] - open_now,
                "open": open_now,
            }
        )
    return sorted(rows, key=lambda r: (-r["judgments"], r["name"]))


def per_hour(judgments: list[Judgment]) -> list[dict]:
    """Judgments per UTC hour, zeros included, over at most the last week with judgments."""
    hours = Counter(
        as_utc(j.created_at).replace(minute=0, second=0, microsecond=0) for j in judgments
    )
    if not hours:
        return []
    last = max(hours)
    hour: datetime = max(min(hours), last - timedelta(hours=HOURS_SHOWN - 1))
    out = []
    while hour <= last:
        out.append({"hour": hour.isoformat(), "judgments": hours[hour]})
        hour += timedelta(hours=1)
    return out


def _bars(counts: Counter, labels: dict) -> list[dict]:
    return [{"label": name, "value": counts[key]} for key, name in labels.items()]


def _shown(judgments: list[Judgment]) -> int:
    """The most responses any of these judges was shown."""
    return max((len(j.display_order or ()) for j in judgments), default=0)


def _response_bars(picked: list[int], k: int, suffix: str = "") -> list[dict]:
    """How often each of ``k`` stored response indices was picked."""
    return _bars(Counter(picked), {i: f"response {i + 1}{suffix}" for i in range(k)})


def label_distribution(project: Project, judgments: list[Judgment]) -> list[dict]:
    """What the answers were, in stored terms: pairwise outcomes, the response ranked best,
    rating scores (all aspects), the response critiqued."""
    if project.task == "pairwise":
        return _bars(Counter(pair_rows(j)[0][2] for j in judgments), PAIRWISE_OUTCOMES)
    if project.task == "rating":
        scores = Counter(
            s
            for j in judgments
            for row in j.label["ratings"].values()
            for s in row
            if s is not None
        )
        scale = range(project.scale_min, project.scale_max + 1)
        return _bars(scores, {s: str(s) for s in scale})
    if project.task == "ranking":
        return _response_bars(
            [j.label["ranking"][0] for j in judgments], _shown(judgments), " best"
        )
    return _response_bars([j.label["target"] for j in judgments], _shown(judgments))


def _shown_pick(judgment: Judgment) -> int | None:
    """The displayed position the judge picked (left = 0), or None for no pick (tie, both bad)."""
    raw = judgment.raw_label
    if judgment.task == "pairwise":
        choice = raw.get("choice")
        if choice is None:
            p = raw["preference"]
            choice = "left" if p > 0.5 else "right" if p < 0.5 else None
        return {"left": 0, "right": 1}.get(choice)
    return raw["ranking"][0] if judgment.task == "ranking" else raw["target"]


def position_bias(project: Project, judgments: list[Judgment]) -> dict:
    """Per displayed position: how often it was picked (pairwise winner, ranked best, critiqued)
    or its mean score (ratings), with the share each position gets when there is no bias."""
    if project.task == "rating":
        scores: dict[int, list[float]] = defaultdict(list)
        for j in judgments:
            for row in j.raw_label["ratings"].values():
                for position, s in enumerate(row):
                    scores[position].append(s)
        bars = [
            {"label": f"position {p + 1}", "value": sum(v) / len(v)}
            for p, v in sorted(scores.items())
        ]
        return {"measure": "mean score", "bars": bars, "expected_share": None}
    picks = Counter(p for j in judgments if (p := _shown_pick(j)) is not None)
    if project.task == "pairwise":
        names = {0: "left", 1: "right"}
    else:
        names = {p: f"position {p + 1}" for p in range(_shown(judgments))}
    measure = {"pairwise": "picked", "ranking": "ranked best", "critique": "critiqued"}
    share = 1 / len(names) if names else None
    return {"measure": measure[project.task], "bars": _bars(picks, names), "expected_share": share}


def _prompt_text(prompt: str | list[dict]) -> str:
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


def most_disputed(session: Session, project: Project, judgments: list[Judgment]) -> list[dict]:
    """The items whose judges disagree most (disagreement > 0), most disputed first."""
    spread: dict[int, list[float]] = defaultdict(list)
    for units, metric in project_units(project, judgments).values():
        delta = METRICS[metric]
        marginals = Counter(v for values in units.values() for v in values.values())
        for unit, coded in units.items():
            values = list(coded.values())
            if len(values) >= 2:
                pairs = [(a, b) for i, a in enumerate(values) for b in values[i + 1 :]]
                spread[unit[0]].append(sum(delta(a, b, marginals) for a, b in pairs) / len(pairs))
    scores = {item: sum(v) / len(v) for item, v in spread.items() if sum(v) > 0}
    top = sorted(scores, key=lambda item: (-scores[item], item))[:MOST_DISPUTED]
    items = {i.id: i for i in session.scalars(select(Item).where(Item.id.in_(top)))}
    by_item: dict[int, list[Judgment]] = defaultdict(list)
    for j in judgments:
        by_item[j.item_id].append(j)
    return [
        {
            "item_id": item_id,
            "external_id": items[item_id].external_id,
            "prompt": _prompt_text(items[item_id].prompt)[:200],
            "judgments": len(by_item[item_id]),
            "disagreement": scores[item_id],
            "answers": [b for b in label_distribution(project, by_item[item_id]) if b["value"] > 0],
        }
        for item_id in top
    ]


def project_dashboard(session: Session, project: Project) -> dict:
    """Everything the dashboard page shows, in one object."""
    judgments = judgments_by(session, project, "human")
    return {
        "project": {
            "id": project.id,
            "name": project.name,
            "task": project.task,
            "redundancy": project.redundancy,
        },
        "progress": progress(session, project, judgments),
        "annotators": annotators(session, project, judgments),
        "per_hour": per_hour(judgments),
        "agreement": project_agreement(session, project, "human"),
        "labels": label_distribution(project, judgments),
        "position_bias": position_bias(project, judgments),
        "most_disputed": most_disputed(session, project, judgments),
        "webhook": delivery_status(session, project),
    }
