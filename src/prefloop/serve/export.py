"""Export judgments as prefloop training records and TRL rows, with provenance beside them.

Every record's ``metadata`` carries the provenance (judgment, item, judge, raw label, display
order, guideline version, time); row exports flatten it into columns next to the training
columns, so ``prefloop.data.load_records`` reads them back as metadata.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import fields
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from prefloop.data.pairs import comparisons_to_unpaired, ratings_to_pairs
from prefloop.data.records import Comparison, Critique, FeedbackRecord, Prompt, Rating, Unpaired
from prefloop.serve.db import Item, Judge, Judgment, Project, as_utc

FORMS = ("prefloop", "trl-explicit", "trl-implicit", "trl-kto")


def provenance(judgment: Judgment, item: Item, judge: Judge) -> dict[str, Any]:
    return {
        "judgment_id": judgment.id,
        "item_id": item.id,
        "external_id": item.external_id,
        "annotator_id": judge.id,
        "judge_kind": judge.kind,
        "ai_model": judge.model or None,
        "ai_prompt_version": judge.prompt_version or None,
        "raw_label": judgment.raw_label,
        "canonical_label": judgment.label,
        "display_order": judgment.display_order,
        "guideline_version": judgment.guideline_version,
        "judged_at": as_utc(judgment.created_at).isoformat(),
    }


def judgment_records(judgment: Judgment, item: Item, judge: Judge) -> list[FeedbackRecord]:
    """The judgment as records of its task's kind (pairwise: one Comparison, ties = 0.5)."""
    texts = [r["text"] for r in item.responses]
    common = {
        "prompt": item.prompt,
        "annotator": f"{judge.kind}:{judge.id}",
        "metadata": provenance(judgment, item, judge),
    }
    label = judgment.label
    if judgment.task == "pairwise":
        a, b = judgment.pair
        p = judgment.preference
        chosen, rejected = (a, b) if p >= 0.5 else (b, a)
        return [
            Comparison(
                chosen=texts[chosen], rejected=texts[rejected], strength=max(p, 1 - p), **common
            )
        ]
    if judgment.task == "ranking":
        k = len(label["ranking"])
        order = {idx: k - rank for rank, idx in enumerate(label["ranking"])}
        shown = sorted(order)
        return [
            Rating(
                responses=[texts[i] for i in shown],
                scores=[float(order[i]) for i in shown],
                **common,
            )
        ]
    if judgment.task == "rating":
        aspects = {name: [float(s) for s in row] for name, row in label["ratings"].items()}
        mean = [sum(col) / len(col) for col in zip(*aspects.values(), strict=True)]
        return [Rating(responses=texts, scores=mean, aspect_scores=aspects, **common)]
    target = label["target"]
    return [
        Critique(
            response=texts[target],
            text=label["critique"] or "",
            revision=label["revision"],
            **common,
        )
    ]


def project_records(
    session: Session, project: Project, judges: str = "all", pairs: bool = False
) -> list[FeedbackRecord]:
    """All submitted judgments of a project as records, oldest first.

    ``pairs=True`` expands rankings and ratings into every strictly ordered pair.
    """
    query = (
        select(Judgment, Item, Judge)
        .join(Item, Item.id == Judgment.item_id)
        .join(Judge, Judge.id == Judgment.judge_id)
        .where(Judgment.project_id == project.id)
        .order_by(Judgment.id)
    )
    if judges != "all":
        query = query.where(Judge.kind == judges)
    records = [r for row in session.execute(query) for r in judgment_records(*row)]
    if pairs:
        records = _expand(records, "all_pairs")
    return records


def _expand(records: list[FeedbackRecord], strategy: str) -> list[FeedbackRecord]:
    out: list[FeedbackRecord] = []
    for record in records:
        out.extend(ratings_to_pairs([record], strategy) if isinstance(record, Rating) else [record])
    return out


def _both_bad(record: Comparison) -> bool:
    return record.metadata["canonical_label"].get("choice") == "both_bad"


def _comparisons(records: list[FeedbackRecord], include_ties: bool) -> list[Comparison]:
    """Preference pairs for TRL: ratings best-vs-worst (unless already expanded), critiques'
    revisions over the original; ties only on request; "both bad" never."""
    out = []
    for record in _expand(records, "best_vs_worst"):
        if isinstance(record, Critique):
            if record.revision:
                out.append(
                    Comparison(
                        record.prompt,
                        record.revision,
                        record.response,
                        annotator=record.annotator,
                        metadata=record.metadata,
                    )
                )
        elif isinstance(record, Comparison) and (record.strength != 0.5 or include_ties):
            out.extend([] if _both_bad(record) else [record])
    return out


def _unpaired(records: list[FeedbackRecord]) -> list[Unpaired]:
    """KTO rows: decided pairs split into desirable/undesirable; "both bad" gives two negatives."""
    out = comparisons_to_unpaired(_comparisons(records, include_ties=False))
    for record in records:
        if isinstance(record, Comparison) and _both_bad(record):
            for text in (record.chosen, record.rejected):
                out.append(Unpaired(record.prompt, text, False, record.annotator, record.metadata))
    return out


def _completion(prompt: Prompt, text: str) -> str | list[dict[str, str]]:
    return text if isinstance(prompt, str) else [{"role": "assistant", "content": text}]


def _implicit(prompt: Prompt, text: str) -> list[dict[str, str]]:
    """The whole conversation; a text prompt becomes one user message, so that the prompt can
    be told apart from the response again (concatenated text could not be split back)."""
    turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    return [*turns, {"role": "assistant", "content": text}]


def rows(records: list[FeedbackRecord], form: str, include_ties: bool = False) -> Iterator[dict]:
    """Training columns of ``form``, ``annotator`` (text, e.g. ``human:3``), then provenance.

    Every form is read back by ``prefloop.data.load_records``: ``annotator`` becomes the
    record's annotator and the provenance columns its metadata.
    """
    if form == "prefloop":
        for r in records:
            yield {
                f.name: getattr(r, f.name) for f in fields(r) if f.name != "metadata"
            } | r.metadata
    elif form == "trl-kto":
        for u in _unpaired(records):
            yield {
                "prompt": u.prompt,
                "completion": _completion(u.prompt, u.completion),
                "label": u.label,
                "annotator": u.annotator,
            } | u.metadata
    else:
        for c in _comparisons(records, include_ties):
            if form == "trl-explicit":
                head = {
                    "prompt": c.prompt,
                    "chosen": _completion(c.prompt, c.chosen),
                    "rejected": _completion(c.prompt, c.rejected),
                }
            else:
                head = {
                    "chosen": _implicit(c.prompt, c.chosen),
                    "rejected": _implicit(c.prompt, c.rejected),
                }
            yield (
                head
                | {"strength": c.strength, "margin": c.margin, "annotator": c.annotator}
                | c.metadata
            )


def ndjson(rows: Iterable[dict]) -> Iterator[str]:
    """One JSON object per line (timestamps as ISO text)."""
    for row in rows:
        yield json.dumps(row, ensure_ascii=False, default=str) + "\n"
