"""Loading, saving and validating feedback files: JSONL, Parquet and datasets folders."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefloop.data import (
    Comparison,
    Critique,
    FeedbackFormatError,
    Rating,
    Unpaired,
    iter_records,
    load_records,
    save_records,
)

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sky colour?"}]

RECORDS = {
    "comparison": [
        Comparison(
            "2+2?", "4", "5", strength=0.9, margin=2.0, annotator="ann-1", metadata={"a": 1}
        ),
        Comparison("Capital of France?", "Paris", "Lyon"),
    ],
    "rating": [
        Rating(
            "Write a haiku.",
            ["old pond", "frog jumps", "splash"],
            [3.0, 1.5, 1.5],
            aspect_scores={"fluency": [1.0, 2.0, 3.0], "honesty": [0.0, 0.5, 1.0]},
            annotator="gpt-judge",
            metadata={"source": "ultrafeedback", "tags": ["poetry"]},
        ),
        Rating("Say hi.", ["hi"], [1.0]),
    ],
    "critique": [
        Critique("2+2?", "5", "Arithmetic error.", revision="4", metadata={"n": None}),
        Critique("Spell cat.", "kat", "Misspelled.", annotator="human-7"),
    ],
    "unpaired": [
        Unpaired("Tell a joke.", "Why did the chicken...", True, annotator="a"),
        Unpaired("Tell a joke.", "No.", False, metadata={"round": 2}),
    ],
}
CONVERSATIONAL = {
    "comparison": [Comparison(CHAT, "Blue.", "Green.", strength=0.6)],
    "rating": [Rating(CHAT, ["Blue.", "Green."], [2.0, 0.0])],
    "critique": [Critique(CHAT, "Green.", "Wrong colour.")],
    "unpaired": [Unpaired(CHAT, "Blue.", True)],
}
FORMATS = {"jsonl": "data.jsonl", "parquet": "data.parquet", "hf": "data_dir"}


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def load_error(path: Path, **kwargs: object) -> FeedbackFormatError:
    with pytest.raises(FeedbackFormatError) as caught:
        load_records(path, **kwargs)
    return caught.value


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", RECORDS)
def test_round_trip_each_kind_and_format(tmp_path: Path, kind: str, fmt: str) -> None:
    for name, records in (("text", RECORDS[kind]), ("chat", CONVERSATIONAL[kind])):
        path = save_records(records, tmp_path / f"{name}-{FORMATS[fmt]}")
        assert load_records(path) == records
        assert load_records(path, kind=kind) == records


@pytest.mark.parametrize("name", ["m.parquet", "m_dir"])
def test_messages_with_extra_keys_survive_arrow(tmp_path: Path, name: str) -> None:
    prompt = [
        {"role": "user", "content": "Hi", "name": "bob"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
    ]
    records = [Unpaired(prompt, "Bye!", True)]
    assert load_records(save_records(records, tmp_path / name)) == records


def test_explicit_format_overrides_extension(tmp_path: Path) -> None:
    path = save_records(RECORDS["unpaired"], tmp_path / "odd.name", format="jsonl")
    assert json.loads(path.read_text().splitlines()[1])["completion"] == "No."
    assert load_records(path.rename(tmp_path / "odd.jsonl")) == RECORDS["unpaired"]


def test_parquet_stores_metadata_and_aspects_as_json_text(tmp_path: Path) -> None:
    path = save_records(RECORDS["rating"], tmp_path / "r.parquet")
    table = pq.read_table(path)
    assert table.column("metadata").to_pylist() == [
        '{"source": "ultrafeedback", "tags": ["poetry"]}',
        "{}",
    ]
    assert json.loads(table.column("aspect_scores")[0].as_py())["honesty"] == [0.0, 0.5, 1.0]
    assert table.column("aspect_scores")[1].as_py() is None


def test_mixed_prompt_forms_fit_jsonl_but_not_arrow(tmp_path: Path) -> None:
    mixed = RECORDS["comparison"] + CONVERSATIONAL["comparison"]
    assert load_records(save_records(mixed, tmp_path / "m.jsonl")) == mixed
    with pytest.raises(FeedbackFormatError) as caught:
        save_records(mixed, tmp_path / "m.parquet")
    assert str(caught.value) == (
        f"{tmp_path / 'm.parquet'}: field 'prompt': expected prompts of one form (all text or "
        "all conversations) in an Arrow column, got a mix of text and conversation prompts"
    )


def test_save_rejects_mixed_kinds_and_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"one kind.*\['Comparison', 'Rating'\]"):
        save_records(RECORDS["comparison"] + RECORDS["rating"], tmp_path / "x.jsonl")
    with pytest.raises(ValueError, match="format must be one of"):
        save_records(RECORDS["rating"], tmp_path / "x.jsonl", format="csv")
    with pytest.raises(ValueError, match="style must be one of"):
        save_records(RECORDS["rating"], tmp_path / "x.jsonl", style="openai")
    with pytest.raises(ValueError, match="no TRL format for Rating"):
        save_records(RECORDS["rating"], tmp_path / "x.jsonl", style="trl")
    with pytest.raises(FeedbackFormatError, match="got extension '.csv'"):
        save_records(RECORDS["rating"], tmp_path / "x.csv")


# --- TRL column conventions -------------------------------------------------------------------


def test_trl_style_writes_only_trl_columns(tmp_path: Path) -> None:
    records = CONVERSATIONAL["comparison"]
    path = save_records(records, tmp_path / "trl.jsonl", style="trl")
    assert json.loads(path.read_text()) == {
        "prompt": CHAT,
        "chosen": [{"role": "assistant", "content": "Blue."}],
        "rejected": [{"role": "assistant", "content": "Green."}],
    }
    assert load_records(path) == [Comparison(CHAT, "Blue.", "Green.")]


def test_trl_style_unpaired_in_parquet(tmp_path: Path) -> None:
    path = save_records(RECORDS["unpaired"], tmp_path / "kto.parquet", style="trl")
    assert pq.read_table(path).column_names == ["prompt", "completion", "label"]
    assert load_records(path) == [
        Unpaired("Tell a joke.", "Why did the chicken...", True),
        Unpaired("Tell a joke.", "No.", False),
    ]


def test_trl_explicit_prompt_standard(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"prompt": "The sky is", "chosen": " blue.", "rejected": " green.", "score_gap": 3}],
    )
    assert load_records(path) == [
        Comparison("The sky is", " blue.", " green.", metadata={"score_gap": 3})
    ]


def test_trl_explicit_prompt_conversational(tmp_path: Path) -> None:
    row = {
        "prompt": CHAT,
        "chosen": [{"role": "assistant", "content": "Blue."}],
        "rejected": [{"role": "assistant", "content": "Green."}],
    }
    assert load_records(write_jsonl(tmp_path / "d.jsonl", [row])) == [
        Comparison(CHAT, "Blue.", "Green.")
    ]


def test_trl_implicit_prompt_takes_shared_leading_messages(tmp_path: Path) -> None:
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Sky colour?"},
    ]
    row = {
        "chosen": [*history, {"role": "assistant", "content": "Blue."}],
        "rejected": [*history, {"role": "assistant", "content": "Green."}],
    }
    path = tmp_path / "implicit.parquet"
    pq.write_table(pa.Table.from_pylist([row]), path)
    [record] = load_records(path)
    assert record.prompt == history
    assert (record.chosen, record.rejected) == ("Blue.", "Green.")


def test_conversational_responses_extend_prompt_without_doubling_it(tmp_path: Path) -> None:
    call = {"role": "assistant", "content": "search(sky)"}
    tool = {"role": "tool", "content": "blue"}
    full = [*CHAT, call, tool]
    rows = [
        {
            "prompt": CHAT,
            "chosen": [call, tool, {"role": "assistant", "content": "Blue."}],
            "rejected": [call, tool, {"role": "assistant", "content": "Green."}],
        },
        {
            "prompt": CHAT,
            "chosen": [*full, {"role": "assistant", "content": "Blue."}],
            "rejected": [*full, {"role": "assistant", "content": "Green."}],
        },
    ]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    assert load_records(path) == [Comparison(full, "Blue.", "Green.")] * 2


def test_trl_unpaired_conversational_completion(tmp_path: Path) -> None:
    row = {
        "prompt": CHAT,
        "completion": [{"role": "assistant", "content": "Blue."}],
        "label": False,
    }
    assert load_records(write_jsonl(tmp_path / "kto.jsonl", [row])) == [
        Unpaired(CHAT, "Blue.", False)
    ]


def test_column_aliases_and_unknown_columns(tmp_path: Path) -> None:
    ratings = write_jsonl(
        tmp_path / "r.json",
        [{"prompt": "p", "completions": ["a", "b"], "scores": [1, 0], "annotator_id": "u9"}],
    )
    assert load_records(ratings) == [Rating("p", ["a", "b"], [1.0, 0.0], annotator="u9")]
    critiques = write_jsonl(
        tmp_path / "c.jsonl",
        [{"prompt": "p", "response": "r", "critique": "too short", "model": "m1"}],
    )
    assert load_records(critiques) == [Critique("p", "r", "too short", metadata={"model": "m1"})]


def test_metadata_column_wins_over_unknown_columns(tmp_path: Path) -> None:
    row = {"prompt": "p", "chosen": "a", "rejected": "b", "x": 1, "y": 2, "metadata": {"x": 9}}
    [record] = load_records(write_jsonl(tmp_path / "d.jsonl", [row]))
    assert record.metadata == {"x": 9, "y": 2}


def test_dataset_dict_split_is_selected(tmp_path: Path) -> None:
    rows = {"prompt": ["p", "q"], "chosen": ["a", "c"], "rejected": ["b", "d"]}
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(rows),
            "test": datasets.Dataset.from_dict({k: v[:1] for k, v in rows.items()}),
        }
    ).save_to_disk(str(tmp_path / "dd"))
    assert load_records(tmp_path / "dd") == [Comparison("p", "a", "b"), Comparison("q", "c", "d")]
    assert load_records(tmp_path / "dd", split="test") == [Comparison("p", "a", "b")]
    err = load_error(tmp_path / "dd", split="validation")
    assert str(err) == (
        f"{tmp_path / 'dd'}: expected a split named 'validation', got splits ['test', 'train']"
    )


def test_iter_records_streams_until_the_bad_line(tmp_path: Path) -> None:
    good = {"prompt": "p", "chosen": "a", "rejected": "b"}
    path = write_jsonl(tmp_path / "d.jsonl", [good, good, {**good, "rejected": None}])
    records = iter_records(path)
    assert next(records) == next(records) == Comparison("p", "a", "b")
    with pytest.raises(FeedbackFormatError, match=r":3: field 'rejected'.*got null"):
        next(records)


def test_empty_file_and_blank_lines(tmp_path: Path) -> None:
    assert load_records(write_jsonl(tmp_path / "e.jsonl", [])) == []
    path = tmp_path / "b.jsonl"
    path.write_text('\n{"prompt": "p", "completion": "c", "label": true}\n\n')
    assert load_records(path) == [Unpaired("p", "c", True)]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_no_records_round_trip(tmp_path: Path, fmt: str) -> None:
    assert load_records(save_records([], tmp_path / FORMATS[fmt])) == []


def test_no_records_refused_for_datasets_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot hold zero records"):
        save_records([], tmp_path / "empty_dir")


def test_bad_arguments_raise_before_iterating(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        iter_records(tmp_path / "whatever.jsonl", kind="ranking")
    with pytest.raises(FeedbackFormatError, match="got nothing at this path"):
        iter_records(tmp_path / "whatever.jsonl")


# --- malformed input --------------------------------------------------------------------------

PAIR = {"prompt": "p", "chosen": "a", "rejected": "b"}
RATING = {"prompt": "p", "responses": ["a", "b", "c"], "scores": [1, 2, 3]}
MALFORMED = {
    "missing field": (
        [PAIR, {"prompt": "p", "chosen": "a"}],
        2,
        "field 'rejected': expected a non-empty string or a list of messages, "
        "got nothing (no such column)",
    ),
    "empty response": (
        [{**PAIR, "chosen": ""}],
        1,
        "field 'chosen': expected a non-empty string or a list of messages, got an empty string",
    ),
    "number response": (
        [PAIR, PAIR, {**PAIR, "chosen": 3}],
        3,
        "field 'chosen': expected a non-empty string or a list of messages, got int 3",
    ),
    "list of non-messages": (
        [{**PAIR, "rejected": ["b", "c"]}],
        1,
        "field 'rejected': expected messages with string 'role' and 'content', got item 0: str 'b'",
    ),
    "conversation not ending with assistant": (
        [{**PAIR, "chosen": [{"role": "user", "content": "a"}]}],
        1,
        "field 'chosen': expected a conversation ending in a non-empty assistant message, "
        "got a final 'user' message with content str 'a'",
    ),
    "implicit prompts differ": (
        [
            {
                "chosen": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "a"}],
                "rejected": [
                    {"role": "user", "content": "y"},
                    {"role": "assistant", "content": "b"},
                ],
            }
        ],
        1,
        "field 'rejected': expected the same leading messages as 'chosen' (only the final "
        "assistant turn may differ), got a conversation that differs earlier",
    ),
    "no prompt at all": (
        [{"chosen": "a", "rejected": "b"}],
        1,
        "field 'prompt': expected a non-empty string or a list of messages, "
        "got nothing (no such column)",
    ),
    "strength above one": (
        [{**PAIR, "strength": 1.5}],
        1,
        "field 'strength': expected a number in [0, 1], got float 1.5",
    ),
    "negative margin": (
        [{**PAIR, "margin": -1}],
        1,
        "field 'margin': expected a non-negative number, got int -1",
    ),
    "annotator not text": (
        [{**PAIR, "annotator_id": 7}],
        1,
        "field 'annotator_id': expected a non-empty string or null, got int 7",
    ),
    "metadata not an object": (
        [{**PAIR, "metadata": "notes"}],
        1,
        "field 'metadata': expected an object or JSON text of an object, got str 'notes'",
    ),
    "scores shorter than responses": (
        [RATING, {**RATING, "scores": [1, 2]}],
        2,
        "field 'scores': expected a list of 3 numbers (one per response), got list of 2 items",
    ),
    "score not a number": (
        [{**RATING, "scores": [1, "2", 3]}],
        1,
        "field 'scores': expected finite numbers (one per response), got item 1: str '2'",
    ),
    "aspect scores wrong length": (
        [{**RATING, "aspect_scores": {"fluency": [1]}}],
        1,
        "field 'aspect_scores': expected a list of 3 numbers (for aspect 'fluency'), "
        "got list of 1 item",
    ),
    "empty rated response": (
        [{**RATING, "responses": ["a", "", "c"]}],
        1,
        "field 'responses': expected a list of non-empty strings, got item 1: an empty string",
    ),
    "label not boolean": (
        [{"prompt": "p", "completion": "c", "label": 1}],
        1,
        "field 'label': expected a boolean (true = desirable), got int 1",
    ),
    "critique without text": (
        [{"prompt": "p", "response": "r", "revision": "s"}],
        1,
        "field 'text': expected a non-empty string, got nothing (no such column)",
    ),
    "unrecognised columns": (
        [{"prompt": "p", "answer": "a"}],
        1,
        "expected the columns of a comparison (chosen, rejected), rating (responses, scores), "
        "unpaired (completion, label) or critique (response, text) record, "
        "got columns ['answer', 'prompt']",
    ),
    "not an object": (
        [PAIR, ["p", "a", "b"]],
        2,
        "expected a JSON object, got list of 3 items",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_jsonl_names_file_line_and_field(tmp_path: Path, case: str) -> None:
    rows, line, detail = MALFORMED[case]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    err = load_error(path)
    assert str(err) == f"{path}:{line}: {detail}"
    assert (err.source, err.line) == (str(path), line)


def test_error_attributes_and_pickling(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{**PAIR, "strength": -0.1}])
    err = load_error(path)
    assert (err.source, err.line, err.field) == (str(path), 1, "strength")
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert (str(copy), copy.field, copy.line) == (str(err), "strength", 1)


def test_invalid_json_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(PAIR) + '\n{"prompt": "p", "chosen": \n')
    err = load_error(path)
    assert str(err).startswith(f"{path}:2: expected a JSON object, got invalid JSON (Expecting")
    assert (err.line, err.field) == (2, None)


def test_kind_given_but_columns_belong_to_another(tmp_path: Path) -> None:
    err = load_error(write_jsonl(tmp_path / "d.jsonl", [PAIR]), kind="rating")
    assert str(err) == (
        f"{tmp_path / 'd.jsonl'}:1: field 'responses': expected a non-empty list of non-empty "
        "strings, got nothing (no such column)"
    )


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    csv = tmp_path / "data.csv"
    csv.write_text("prompt,chosen,rejected\n")
    assert str(load_error(csv)) == (
        f"{csv}: expected a .jsonl, .json or .parquet file or a datasets directory, "
        "got extension '.csv'"
    )
    bare = tmp_path / "data"
    bare.write_text("{}")
    assert str(load_error(bare)).endswith("got a file without an extension")
    missing = tmp_path / "nope.jsonl"
    err = load_error(missing)
    assert (
        str(err) == f"{missing}: expected an existing file or directory, got nothing at this path"
    )
    assert (err.line, err.field) == (None, None)


def test_malformed_parquet_row_is_numbered(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    rows = [PAIR, PAIR, {**PAIR, "chosen": ""}]
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert str(load_error(path)) == (
        f"{path}:3: field 'chosen': expected a non-empty string or a list of messages, "
        "got an empty string"
    )


def test_unreadable_parquet(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_text("not parquet")
    assert str(load_error(path)).startswith(f"{path}: expected a Parquet file, got unreadable")


def test_malformed_dataset_row_is_numbered(tmp_path: Path) -> None:
    rows = {"prompt": ["p", "q"], "chosen": ["a", "c"], "rejected": ["b", "d"], "strength": [1, 2]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    err = load_error(tmp_path / "ds")
    assert str(err) == (
        f"{tmp_path / 'ds'}:2: field 'strength': expected a number in [0, 1], got int 2"
    )


def test_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    assert str(load_error(tmp_path / "plain")) == (
        f"{tmp_path / 'plain'}: expected a folder written by datasets' save_to_disk, "
        "got a folder without dataset files"
    )
