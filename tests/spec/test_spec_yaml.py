"""The position-tracking reader: YAML 1.2 core typing, positions, and located syntax errors."""

import json
import math

import pytest

from flowpipe.spec._yaml import dotted, load


def test_plain_scalars_follow_the_yaml_1_2_core_schema() -> None:
    text = (
        "a: 1\nb: yes\nc: TRUE\nd: ~\ne:\nf: 012\ng: 0x1F\nh: 1.5e3\ni: -.inf\n"
        "j: '3'\nk: !!str 4\nl: on\nm: null\nn: 1_000\no: False\np: 0o17\n"
    )
    doc, problems = load(text, "f.yaml")
    assert problems == []
    assert doc is not None
    assert doc.data == {
        "a": 1, "b": "yes", "c": True, "d": None, "e": None, "f": 12, "g": 31, "h": 1500.0,
        "i": -math.inf, "j": "3", "k": "4", "l": "on", "m": None, "n": "1_000", "o": False, "p": 15,
    }  # fmt: skip
    assert isinstance(doc.data, dict)
    assert isinstance(doc.data["a"], int) and isinstance(doc.data["h"], float)
    # Each number keeps the text it was written as, for a field that takes text.
    assert [doc.data[k].text for k in "afghp"] == ["1", "012", "0x1F", "1.5e3", "0o17"]


def test_mapping_keys_are_always_strings() -> None:
    doc, _ = load("1: a\ntrue: b\n~: c\n", "f.yaml")
    assert doc is not None and doc.data == {"1": "a", "true": "b", "~": "c"}


def test_positions_of_values_keys_and_items_are_one_based() -> None:
    doc, _ = load("stages:\n  - name: src\n    config: {a: [1, 2]}\n", "f.yaml")
    assert doc is not None
    assert doc.values[()] == (1, 1)
    assert doc.keys[("stages",)] == (1, 1)
    assert doc.values[("stages", 0)] == (2, 5)
    assert doc.keys[("stages", 0, "name")] == (2, 5)
    assert doc.values[("stages", 0, "name")] == (2, 11)
    assert doc.values[("stages", 0, "config", "a", 1)] == (3, 21)


def test_json_is_read_with_positions_even_with_tab_indentation() -> None:
    doc, problems = load('{\n\t"a": [1,\n\t\t2],\n\t"b": "x\\/y"\n}', "f.json")
    assert problems == []
    assert doc is not None and doc.data == {"a": [1, 2], "b": "x/y"}
    assert doc.values[("a", 1)] == (3, 3)


def test_duplicate_key_is_reported_at_the_second_and_the_first_is_kept() -> None:
    doc, problems = load("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert doc is not None and doc.data == {"a": 1, "b": 2}
    assert [str(p) for p in problems] == [
        "f.yaml:3:1: error: duplicate key 'a' (first given at line 1) (fix: remove one of them)"
    ]


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("a: [1,\nb: 2\n", (3, 1), "flow sequence started at line 1"),
        ("a: 1\n---\nb: 2\n", (2, 1), "expected a single document"),
        ("a: *nowhere\n", (1, 4), "found undefined alias"),
        ("a: b: c\n", (1, 5), "mapping values are not allowed"),
        ("a: \x07\n", (1, 4), "control characters are not allowed"),
    ],
)
def test_syntax_errors_are_located(text: str, where: tuple[int, int], words: str) -> None:
    doc, problems = load(text, "f.yaml")
    assert doc is None
    [problem] = problems
    assert (problem.line, problem.column) == where
    assert problem.message.startswith("invalid YAML: ") and words in problem.message


def test_json_syntax_errors_name_json() -> None:
    _, [problem] = load('{"a": 1,, }', "f.json")
    assert problem.message.startswith("invalid JSON: ")


def test_bad_tags_and_recursive_aliases_are_problems() -> None:
    _, problems = load("a: !!int abc\nb: !custom x\nc: &x [*x]\n", "f.yaml")
    assert [(p.line, p.column, p.message) for p in problems] == [
        (1, 4, "'abc' is not a valid int"),
        (2, 4, "unsupported YAML tag '!custom'"),
        (3, 4, "an alias refers to the collection that contains it"),
    ]


def test_merge_keys_are_reported_and_aliases_work() -> None:
    doc, problems = load("base: &b {x: 1}\ncopy: *b\nmerged: {<<: *b, y: 2}\nvalue: <<\n", "f.yaml")
    assert doc is not None and doc.data == {
        "base": {"x": 1},
        "copy": {"x": 1},
        "merged": {"y": 2},
        "value": "<<",
    }
    assert [(p.line, p.column, p.message) for p in problems] == [
        (3, 10, "YAML merge keys (<<) are not supported")
    ]


def test_empty_document_reads_as_null() -> None:
    doc, problems = load("# nothing\n", "f.yaml")
    assert problems == [] and doc is not None and doc.data is None


def test_dotted_paths() -> None:
    assert dotted(("stages", 2, "config", "verbose")) == "stages[2].config.verbose"
    assert dotted(()) == ""


def test_characters_escaped_as_surrogate_pairs_read_as_one() -> None:
    # What json.dumps writes for a character beyond U+FFFF; an escaped backslash stays text.
    text = json.dumps({"a": "smile \U0001f600", "b": "\\ud83d\\ude00"})
    assert "\\ud83d\\ude00" in text
    doc, problems = load(text, "f.json")
    assert problems == [] and doc is not None
    assert doc.data == json.loads(text) == {"a": "smile \U0001f600", "b": "\\ud83d\\ude00"}
