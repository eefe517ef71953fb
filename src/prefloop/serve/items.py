"""Add items to a project, from the API or from a file of records."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from prefloop.data.records import Comparison, FeedbackRecord, Rating
from prefloop.serve.db import Item, Project
from prefloop.serve.schemas import ItemIn


def insert_items(
    session: Session, project: Project, specs: Sequence[ItemIn]
) -> tuple[list[int], int]:
    """Add ``specs``; those whose ``external_id`` the project already has are not added again.

    Returns every spec's item id, in order, and how many items are new.
    """
    externals = [i.external_id for i in specs if i.external_id is not None]
    if len(set(externals)) != len(externals):
        raise HTTPException(422, "external_id repeats within the batch")
    known = dict(
        session.execute(
            select(Item.external_id, Item.id).where(
                Item.project_id == project.id, Item.external_id.in_(externals)
            )
        ).all()
    )
    ids, created = [], 0
    for spec in specs:
        if spec.external_id in known:
            ids.append(known[spec.external_id])
            continue
        item = Item(
            project_id=project.id,
            external_id=spec.external_id,
            prompt=spec.prompt
            if isinstance(spec.prompt, str)
            else [m.model_dump() for m in spec.prompt],
            responses=[r.model_dump(exclude_none=True) for r in spec.responses],
            rewards=spec.rewards,
            item_metadata=spec.metadata,
        )
        session.add(item)
        session.flush()
        ids.append(item.id)
        created += 1
    return ids, created


def item_from_record(record: FeedbackRecord, external_id: str | None = None) -> ItemIn:
    """An item to judge from a prefloop record: a comparison's two responses (in a fixed
    order, the label dropped) or a rating's responses."""
    if isinstance(record, Comparison):
        responses = [record.chosen, record.rejected]
    elif isinstance(record, Rating):
        responses = list(record.responses)
    else:
        raise ValueError(f"cannot make an item to judge from a {type(record).__name__} record")
    return ItemIn(
        external_id=external_id, prompt=record.prompt, responses=responses, metadata=record.metadata
    )
