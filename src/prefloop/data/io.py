"""Load and save feedback records as JSON Lines, Parquet, or Hugging Face ``datasets`` folders.

Rows may use prefloop's own column names (the record field names) or TRL's dataset formats.
Every row is validated while it is read; any problem raises :class:`FeedbackFormatError`
naming the file, the 1-based line or row, and the column.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, NoReturn

import pyarrow as pa
import pyarrow.parquet as pq

from prefloop.data.errors import MISSING, FeedbackFormatError, describe
from prefloop.data.records import (
    Comparison,
    Critique,
    FeedbackRecord,
    Message,
    Prompt,
    Rating,
    Unpaired,
)

KINDS = ("comparison", "rating", "critique", "unpaired")
FORMATS = ("jsonl", "parquet", "hf")
STYLES = ("prefloop", "trl")

_EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
#: Columns that the record kind is recognised by, checked in this order on the first row.
_KIND_COLUMNS = (
    ("comparison", ("chosen", "rejected")),
    ("rating", ("scores",)),
    ("unpaired", ("completion", "label")),
    ("critique", ("response",)),
)
#: Dict-valued fields stored as JSON text in Arrow formats: Arrow structs cannot be empty and
#: would merge the keys of all rows, so a dict would not come back as it was saved.
_JSON_COLUMNS = ("metadata", "aspect_scores")

PathLike = str | os.PathLike[str]


# ---------------------------------------------------------------------------------------------
# Reading


def load_records(
    path: PathLike, kind: str | None = None, split: str = "train"
) -> list[FeedbackRecord]:
    """Read and validate every record in a ``.jsonl``/``.json``, ``.parquet`` or datasets folder.

    ``kind`` is one of :data:`KINDS`, or None to infer it from the first row's columns;
    ``split`` picks the split when the folder holds a ``DatasetDict``.
    """
    return list(iter_records(path, kind, split))


def iter_records(
    path: PathLike, kind: str | None = None, split: str = "train"
) -> Iterator[FeedbackRecord]:
    """Stream the records of :func:`load_records` one at a time, validating each as it is read.

    A bad ``kind``, a missing file or an unknown extension raise at once; bad rows raise when
    they are reached.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    source = Path(path)
    return _parse_rows(_read_rows(source, split), str(source), kind)


def load_prompts(path: PathLike, split: str = "train") -> list[Prompt]:
    """The prompts an online method samples for: a ``.txt`` file (one per line) or the
    ``prompt`` column (text or messages) of a JSONL/Parquet file or datasets directory."""
    source = Path(path)
    if source.suffix.lower() == ".txt" and source.is_file():
        prompts: list[Prompt] = [line.strip() for line in source.read_text().splitlines()]
        prompts = [p for p in prompts if p]
    else:
        prompts = [_prompt(_Row(data, str(source), line), [])
                   for line, data in _read_rows(source, split)]  # fmt: skip
    if not prompts:
        raise FeedbackFormatError(source, "at least one prompt", "no prompts")
    return prompts


def _read_rows(path: Path, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.exists():
        raise FeedbackFormatError(path, "an existing file or directory", "nothing at this path")
    fmt = _format_of(path)
    if fmt == "hf":
        return _dataset_rows(path, split)
    if fmt == "parquet":
        return _parquet_rows(path)
    return _jsonl_rows(path)


def _parse_rows(
    rows: Iterator[tuple[int, dict[str, Any]]], source: str, kind: str | None
) -> Iterator[FeedbackRecord]:
    for line, data in rows:
        row = _Row(data, source, line)
        kind = kind or _infer_kind(row)
        yield _parse(row, kind)


def _format_of(path: Path) -> str:
    """The format a path's extension names; a folder, or a new path without one, is ``"hf"``."""
    if path.is_dir() or not (path.suffix or path.exists()):
        return "hf"
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise FeedbackFormatError(
            path,
            "a .jsonl, .json or .parquet file or a datasets directory",
            f"extension '{path.suffix}'" if path.suffix else "a file without an extension",
        )
    return fmt


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
                raise FeedbackFormatError(
                    path, "a JSON object", f"invalid JSON ({err})", line=number
                ) from None
            if not isinstance(data, dict):
                raise FeedbackFormatError(path, "a JSON object", describe(data), line=number)
            yield number, data


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise FeedbackFormatError(path, "a Parquet file", f"unreadable data ({err})") from None
    rows = (data for batch in parquet.iter_batches() for data in batch.to_pylist())
    yield from enumerate(rows, start=1)


def _dataset_rows(path: Path, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
    import datasets  # imported here: it is slow to import and only folders need it

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise FeedbackFormatError(
            path, "a folder written by datasets' save_to_disk", "a folder without dataset files"
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise FeedbackFormatError(path, f"a split named '{split}'", f"splits {sorted(loaded)}")
        loaded = loaded[split]
    yield from enumerate(loaded, start=1)


class _Row:
    """One input row and where it came from; remembers which columns were read."""

    def __init__(self, data: dict[str, Any], source: str, line: int) -> None:
        self.data = data
        self.source = source
        self.line = line
        self.used: set[str] = set()

    def take(self, *names: str) -> tuple[str, Any]:
        """The first of ``names`` (aliases) holding a value, else the first present, else MISSING.

        Returns the column name used and its value, and marks that column as read.
        """
        present = [name for name in names if name in self.data]
        name = next((n for n in present if self.data[n] is not None), (present or names)[0])
        self.used.add(name)
        return name, self.data.get(name, MISSING)

    def unread(self) -> dict[str, Any]:
        return {name: value for name, value in self.data.items() if name not in self.used}

    def fail(self, field: str | None, expected: str, got: str) -> NoReturn:
        raise FeedbackFormatError(self.source, expected, got, line=self.line, field=field)


def _infer_kind(row: _Row) -> str:
    for kind, columns in _KIND_COLUMNS:
        if all(column in row.data for column in columns):
            return kind
    row.fail(
        None,
        "the columns of a comparison (chosen, rejected), rating (responses, scores), "
        "unpaired (completion, label) or critique (response, text) record",
        f"columns {sorted(row.data)}",
    )


def _parse(row: _Row, kind: str) -> FeedbackRecord:
    record_type, kind_fields = _PARSERS[kind]
    specific = kind_fields(row)
    annotator = _optional_text(row, "annotator", "annotator_id")
    # Metadata last: it collects every column that nothing above has read.
    return record_type(**specific, annotator=annotator, metadata=_metadata(row))


def _comparison_fields(row: _Row) -> dict[str, Any]:
    chosen_lead, chosen = _response(row, "chosen")
    rejected_lead, rejected = _response(row, "rejected")
    if rejected_lead != chosen_lead:
        row.fail(
            "rejected",
            "the same leading messages as 'chosen' (only the final assistant turn may differ)",
            "a conversation that differs earlier",
        )
    return {
        "prompt": _prompt(row, chosen_lead),
        "chosen": chosen,
        "rejected": rejected,
        "strength": _optional_number(row, "strength", "a number in [0, 1]", lambda v: 0 <= v <= 1),
        "margin": _optional_number(row, "margin", "a non-negative number", lambda v: v >= 0),
    }


def _rating_fields(row: _Row) -> dict[str, Any]:
    prompt = _prompt(row, [])
    name, responses = row.take("responses", "completions")
    if not isinstance(responses, list) or not responses:
        row.fail(name, "a non-empty list of non-empty strings", describe(responses))
    for index, response in enumerate(responses):
        if not isinstance(response, str) or not response:
            row.fail(name, "a list of non-empty strings", f"item {index}: {describe(response)}")
    count = len(responses)
    _, scores = row.take("scores")
    scores = _numbers(row, "scores", scores, count, "one per response")
    aspects = _json_object(row, "aspect_scores")
    if aspects is not None:
        aspects = {
            aspect: _numbers(row, "aspect_scores", values, count, f"for aspect '{aspect}'")
            for aspect, values in aspects.items()
        }
    return {"prompt": prompt, "responses": responses, "scores": scores, "aspect_scores": aspects}


def _critique_fields(row: _Row) -> dict[str, Any]:
    return {
        "prompt": _prompt(row, []),
        "response": _text(row, "response"),
        "text": _text(row, "text", "critique"),
        "revision": _optional_text(row, "revision"),
    }


def _unpaired_fields(row: _Row) -> dict[str, Any]:
    lead, completion = _response(row, "completion")
    name, label = row.take("label")
    if not isinstance(label, bool):
        row.fail(name, "a boolean (true = desirable)", describe(label))
    return {"prompt": _prompt(row, lead), "completion": completion, "label": label}


_PARSERS: dict[str, tuple[type, Callable[[_Row], dict[str, Any]]]] = {
    "comparison": (Comparison, _comparison_fields),
    "rating": (Rating, _rating_fields),
    "critique": (Critique, _critique_fields),
    "unpaired": (Unpaired, _unpaired_fields),
}


def _response(row: _Row, column: str) -> tuple[list[Message], str]:
    """A response as ``(leading messages, text)``: plain text, or a conversation whose final
    assistant message is the response and whose earlier messages belong to the prompt."""
    name, value = row.take(column)
    if not isinstance(value, list):
        if not isinstance(value, str) or not value:
            row.fail(name, "a non-empty string or a list of messages", describe(value))
        return [], value
    messages = _messages(row, name, value)
    final = messages[-1]
    if final["role"] != "assistant" or not final["content"]:
        row.fail(
            name,
            "a conversation ending in a non-empty assistant message",
            f"a final {final['role']!r} message with content {describe(final['content'])}",
        )
    return messages[:-1], final["content"]


def _prompt(row: _Row, lead: list[Message]) -> Prompt:
    """The prompt column, extended by the responses' leading messages.

    A missing prompt column is TRL's implicit-prompt form: the leading messages are the whole
    prompt. So are they when they already start with the prompt column's messages (datasets
    that store both a prompt and full conversations), so the prompt is not doubled.
    """
    name, value = row.take("prompt")
    if value in (None, MISSING) and lead:
        return lead
    if isinstance(value, list):
        messages = _messages(row, name, value)
        return lead if lead[: len(messages)] == messages else messages + lead
    if not isinstance(value, str) or not value:
        row.fail(name, "a non-empty string or a list of messages", describe(value))
    if lead:
        row.fail(name, "a list of messages, as the responses continue a conversation", "a string")
    return value


def _messages(row: _Row, name: str, value: list[Any]) -> list[Message]:
    if not value:
        row.fail(name, "a non-empty list of messages", "an empty list")
    for index, message in enumerate(value):
        if not (
            isinstance(message, dict)
            and isinstance(message.get("role"), str)
            and isinstance(message.get("content"), str)
        ):
            row.fail(
                name,
                "messages with string 'role' and 'content'",
                f"item {index}: {describe(message)}",
            )
    # Arrow fills keys that only some messages have with nulls; drop those again.
    return [{key: text for key, text in message.items() if text is not None} for message in value]


def _text(row: _Row, *names: str) -> str:
    name, value = row.take(*names)
    if not isinstance(value, str) or not value:
        row.fail(name, "a non-empty string", describe(value))
    return value


def _optional_text(row: _Row, *names: str) -> str | None:
    name, value = row.take(*names)
    if value in (None, MISSING):
        return None
    if not isinstance(value, str) or not value:
        row.fail(name, "a non-empty string or null", describe(value))
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _optional_number(
    row: _Row, name: str, expected: str, valid: Callable[[float], bool]
) -> float | None:
    _, value = row.take(name)
    if value in (None, MISSING):
        return None
    if not _is_number(value) or not valid(value):
        row.fail(name, expected, describe(value))
    return float(value)


def _numbers(row: _Row, name: str, values: Any, count: int, purpose: str) -> list[float]:
    if not isinstance(values, list) or len(values) != count:
        row.fail(name, f"a list of {count} numbers ({purpose})", describe(values))
    for index, value in enumerate(values):
        if not _is_number(value):
            row.fail(name, f"finite numbers ({purpose})", f"item {index}: {describe(value)}")
    return [float(value) for value in values]


def _json_object(row: _Row, name: str) -> dict[str, Any] | None:
    """An optional dict column, given as an object or as JSON text (prefloop's Arrow form)."""
    _, value = row.take(name)
    decoded = value
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            decoded = value
    if decoded in (None, MISSING):
        return None
    if not isinstance(decoded, dict):
        row.fail(name, "an object or JSON text of an object", describe(value))
    return decoded


def _metadata(row: _Row) -> dict[str, Any]:
    explicit = _json_object(row, "metadata") or {}
    return {**row.unread(), **explicit}


# ---------------------------------------------------------------------------------------------
# Writing


def save_records(
    records: Iterable[FeedbackRecord],
    path: PathLike,
    format: str | None = None,
    style: str = "prefloop",
) -> Path:
    """Write records of one kind to ``path`` and return it (so it can go to :func:`load_records`).

    ``format`` is ``"jsonl"``, ``"parquet"`` or ``"hf"`` (a ``save_to_disk`` folder); None infers
    it from the extension, a path without one meaning a folder. ``style="trl"`` writes only TRL's
    columns (prompt/chosen/rejected or prompt/completion/label), dropping prefloop's extras.
    """
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS} or None, got {format!r}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    records = list(records)
    types = sorted({type(record).__name__ for record in records})
    if len(types) > 1:
        raise ValueError(f"records must all be of one kind to share a file, got {types}")
    target = Path(path)
    rows = [_to_row(record, style) for record in records]
    _WRITERS[format or _format_of(target)](rows, target)
    return target


def _to_row(record: FeedbackRecord, style: str) -> dict[str, Any]:
    if style == "prefloop":
        return {field.name: getattr(record, field.name) for field in fields(record)}
    if isinstance(record, Comparison):
        return {
            "prompt": record.prompt,
            "chosen": _trl_response(record.prompt, record.chosen),
            "rejected": _trl_response(record.prompt, record.rejected),
        }
    if isinstance(record, Unpaired):
        return {
            "prompt": record.prompt,
            "completion": _trl_response(record.prompt, record.completion),
            "label": record.label,
        }
    raise ValueError(f"style='trl' has no TRL format for {type(record).__name__} records")


def _trl_response(prompt: Prompt, text: str) -> str | list[Message]:
    """TRL wants conversational completions whenever the prompt is conversational."""
    return text if isinstance(prompt, str) else [{"role": "assistant", "content": text}]


def _write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(_arrow_columns(rows, path)), path)


def _write_dataset(rows: list[dict[str, Any]], path: Path) -> None:
    import datasets  # imported here: it is slow to import and only folders need it

    if not rows:  # save_to_disk writes no data file for zero rows, and then cannot reload it
        raise ValueError("datasets folders cannot hold zero records; save them as JSONL or Parquet")
    datasets.Dataset.from_dict(_arrow_columns(rows, path)).save_to_disk(str(path))


def _arrow_columns(rows: list[dict[str, Any]], path: Path) -> dict[str, list[Any]]:
    """Rows as columns for Arrow, dict fields as JSON text; prompts must share one form."""
    columns = {name: [row[name] for row in rows] for name in (rows[0] if rows else {})}
    for name in _JSON_COLUMNS:
        if name in columns:
            columns[name] = [None if v is None else json.dumps(v) for v in columns[name]]
    if len({isinstance(prompt, str) for prompt in columns.get("prompt", [])}) > 1:
        raise FeedbackFormatError(
            path,
            "prompts of one form (all text or all conversations) in an Arrow column",
            "a mix of text and conversation prompts",
            field="prompt",
        )
    return columns


_WRITERS: dict[str, Callable[[list[dict[str, Any]], Path], None]] = {
    "jsonl": _write_jsonl,
    "parquet": _write_parquet,
    "hf": _write_dataset,
}
