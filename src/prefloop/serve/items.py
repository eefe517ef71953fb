"""Add items to a project, from the API or from a file of records."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from fastapi import HTTPException
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from prefloop.data.io import load_records
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


class ItemFileError(ValueError):
    """A bad entry in an item file: ``{where}: [field '{field}': ]{message}``."""

    def __init__(self, where: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{where}: " + (f"field '{field}': " if field else "") + message)

    @classmethod
    def invalid(cls, where: str, err: ValidationError) -> ItemFileError:
        """The first problem pydantic found, located by its field path."""
        first, *rest = err.errors()
        more = f" (and {len(rest)} more problems)" if rest else ""
        return cls(where, first["msg"] + more, ".".join(map(str, first["loc"])) or None)


def _json_lines(source: Path) -> Iterator[tuple[int, object]]:
    """(1-based line number, decoded JSON) for every non-blank line."""
    with source.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                byte = f"byte {raw[err.start]:#04x} at column {err.start + 1}"
                raise ItemFileError(f"{source}:{number}", f"not UTF-8 text ({byte})") from None
            if not text.strip():
                continue
            try:
                yield number, json.loads(text.rstrip("\r\n"))
            except json.JSONDecodeError as err:  # its messages end in "at" (the position)
                message = f"invalid JSON at column {err.colno}: {err.msg.removesuffix(' at')}"
                raise ItemFileError(f"{source}:{number}", message) from None


def _is_item_form(data: object) -> bool:
    return isinstance(data, dict) and "responses" in data and set(data) <= set(ItemIn.model_fields)


def api_item_lines(source: Path) -> list[ItemIn] | None:
    """Items from a JSONL file in the API's item form; None if the file is in another form.

    The form is told by the first line. Line ``n`` (counting non-blank lines from 0) gets
    ``external_id`` ``"{file name}:{n}"`` unless it has one, so importing again adds nothing.
    """
    if source.suffix != ".jsonl" or not source.is_file():
        return None  # load_records reads it, or says what is wrong with the path
    items: list[ItemIn] = []
    for index, (line, data) in enumerate(_json_lines(source)):
        if index == 0 and not _is_item_form(data):
            return None
        where = f"{source}:{line}"
        if not isinstance(data, dict):
            raise ItemFileError(where, f"expected a JSON object, got {type(data).__name__}")
        try:
            items.append(ItemIn.model_validate({"external_id": f"{source.name}:{index}", **data}))
        except ValidationError as err:
            raise ItemFileError.invalid(where, err) from None
    return items


def items_from_file(source: Path) -> list[ItemIn]:
    """Items from API-form JSONL or from any file ``load_records`` reads (labels dropped).

    Raises :class:`ItemFileError` or ``FeedbackFormatError`` naming the file, line and field.
    """
    items = api_item_lines(source)
    return record_items(source, load_records(source)) if items is None else items


def record_items(source: Path, records: Sequence[FeedbackRecord]) -> list[ItemIn]:
    """Items to judge from a file's records; the ``n``-th (from 0) gets ``"{file name}:{n}"``."""
    items = []
    for index, record in enumerate(records):
        where = f"{source}: record {index + 1}"
        try:
            items.append(item_from_record(record, f"{source.name}:{index}"))
        except ValidationError as err:
            raise ItemFileError.invalid(where, err) from None
        except ValueError as err:
            raise ItemFileError(where, str(err)) from None
    return items
