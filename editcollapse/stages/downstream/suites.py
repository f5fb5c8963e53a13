"""Offline lm-eval task suites: items built from local data, written as JSONL + task YAML.

lm-eval reads a local suite through ``dataset_path: json`` with an absolute
``dataset_kwargs.data_files.test``, so the same files run under our runner and under lm-eval's own
command line (``--include_path DIR``). Each builder is a pure function from source records to a
:class:`LocalTask`; names say where the data came from (``ec_`` = built by editcollapse).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from editcollapse.core.case import EditCase

# The paper's MMLU subset (MMLU_sub): one subject from each of MMLU's four categories.
PAPER_MMLU_SUBJECTS = ("formal_logic", "public_relations", "college_physics", "global_facts")

_ACC = {"metric": "acc", "aggregation": "mean", "higher_is_better": True}
_ACC_NORM = {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}
_PERPLEXITY = {"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False}
_LAST_WORD = re.compile(r"^[A-Za-z]{2,}$")
_TRAILING = " \t\n.,;:!?\"'”’)]»…"


class SuiteDataError(ValueError):
    """A source record cannot become a task item; the message names file, record and field."""


@dataclass(frozen=True)
class LocalTask:
    """One lm-eval task over local items: its name, its documents, and its YAML fields."""

    name: str
    docs: tuple[dict[str, Any], ...]
    config: dict[str, Any]
    about: str = ""
    source: str = ""

    def yaml_config(self, data_file: Path) -> dict[str, Any]:
        """The task YAML as a dict, pointing at ``data_file`` (made absolute)."""
        return {
            "task": self.name,
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(Path(data_file).resolve())}},
            "test_split": "test",
            **self.config,
            "metadata": {"version": 1.0},
        }


def lastword_task(
    texts: Iterable[str],
    *,
    name: str = "ec_lastword_embedded",
    n: int | None = None,
    seed: int = 0,
    min_words: int = 8,
    max_words: int = 80,
    source: str = "",
) -> LocalTask:
    """LAMBADA-style last-word prediction over ``texts`` (lambada_openai's prompt and metrics).

    Each text (a document or a sentence) gives one passage: its longest run of leading sentences
    with at most ``max_words`` words (LAMBADA passages are a few sentences long), kept when it has
    at least ``min_words`` words and, once trailing punctuation is stripped, ends in an alphabetic
    word. Items are shuffled with ``seed`` (so lm-eval's ``--limit`` takes a random sample) and
    the first ``n`` are kept.
    """
    from editcollapse.datasets.ppl import split_sentences

    docs = []
    for text in texts:
        words = _leading_passage(split_sentences(text), max_words).rstrip(_TRAILING).split(" ")
        if len(words) >= min_words and _LAST_WORD.match(words[-1]):
            docs.append({"text": " ".join(words)})
    docs = _unique(docs, key="text")
    random.Random(seed).shuffle(docs)
    docs = docs[:n] if n is not None else docs
    if not docs:
        raise SuiteDataError(f"{name}: no text has {min_words}+ words ending in an alphabetic word")
    config = {
        "output_type": "loglikelihood",
        "doc_to_text": "{{text.split(' ')[:-1]|join(' ')}}",
        "doc_to_target": "{{' '+text.split(' ')[-1]}}",
        "metric_list": [_PERPLEXITY, _ACC],
    }
    return LocalTask(
        name,
        tuple(docs),
        config,
        source=source,
        about="last-word prediction in LAMBADA's format (not LAMBADA's data): acc = the "
        "greedy continuation is exactly the last word",
    )


def _leading_passage(sentences: Sequence[str], max_words: int) -> str:
    """The longest run of leading ``sentences`` within ``max_words`` words ("" when the first is longer)."""
    kept: list[str] = []
    count = 0
    for sentence in sentences:
        words = sentence.split()
        if count + len(words) > max_words:
            break
        kept.extend(words)
        count += len(words)
    return " ".join(kept)


def geofacts_mc_task(
    cases: Iterable[EditCase],
    *,
    name: str = "ec_geofacts_mc",
    n_choices: int = 4,
    n: int | None = None,
    seed: int = 0,
    source: str = "",
) -> LocalTask:
    """Multiple choice over the true facts behind edit cases: which object completes the prompt?

    One item per (relation, subject), from the first case that states it. The choices are the true
    object, the case's counterfactual target and other objects of the same relation, shuffled.
    """
    by_fact: dict[tuple[str, str], EditCase] = {}
    objects: dict[str, list[str]] = {}
    for case in cases:
        if not case.target_true:
            continue
        relation = case.relation_id or ""
        by_fact.setdefault((relation, case.subject), case)
        pool = objects.setdefault(relation, [])
        for value in (case.target_true, case.target_new):
            if value not in pool:
                pool.append(value)
    rng = random.Random(seed)
    docs = []
    for (relation, _), case in by_fact.items():
        others = [value for value in objects[relation] if value != case.target_true]
        distractors = [case.target_new] if case.target_new != case.target_true else []
        rest = [value for value in others if value not in distractors]
        rng.shuffle(rest)
        distractors += rest[: n_choices - 1 - len(distractors)]
        if len(distractors) < n_choices - 1:
            continue  # a relation with too few objects cannot make an n-way question
        choices = [case.target_true, *distractors[: n_choices - 1]]
        rng.shuffle(choices)
        docs.append(
            {
                "query": case.filled_prompt,
                "choices": choices,
                "label": choices.index(case.target_true),
                "case_id": case.case_id,
            }
        )
    rng.shuffle(docs)
    docs = docs[:n] if n is not None else docs
    if not docs:
        raise SuiteDataError(f"{name}: no case has a true target and {n_choices - 1} distinct distractors")
    config = {
        "output_type": "multiple_choice",
        "doc_to_text": "{{query}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "label",
        "metric_list": [_ACC, _ACC_NORM],
    }
    return LocalTask(
        name,
        tuple(docs),
        config,
        source=source,
        about=f"{n_choices}-way multiple choice over the true facts of the embedded "
        "knowledge source (chance = 1/n_choices)",
    )


def mmlu_task(
    records: Sequence[dict[str, Any]],
    *,
    name: str = "ec_mmlu_sub",
    subjects: Sequence[str] = PAPER_MMLU_SUBJECTS,
    source: str = "",
) -> LocalTask:
    """MMLU questions of ``subjects`` with lm-eval's zero-shot MMLU prompt (description per subject).

    ``records`` are MMLU rows (question, subject, choices[4], answer 0-3); a malformed row of a
    wanted subject raises :class:`SuiteDataError` naming ``source``, the row index and the field.
    """
    wanted = set(subjects)
    docs = []
    for index, record in enumerate(records):
        if not isinstance(record, dict) or record.get("subject") not in wanted:
            continue
        docs.append(_mmlu_doc(record, index, source))
    missing = wanted - {doc["subject"] for doc in docs}
    if missing:
        raise SuiteDataError(f"{source or name}: no MMLU question of subject(s) {sorted(missing)}")
    config = {
        "output_type": "multiple_choice",
        "description": "The following are multiple choice questions (with answers) about "
        "{{subject.replace('_', ' ')}}.\n\n",
        "doc_to_text": "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\n"
        "C. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:",
        "doc_to_choice": ["A", "B", "C", "D"],
        "doc_to_target": "answer",
        "metric_list": [_ACC],
    }
    return LocalTask(
        name,
        tuple(docs),
        config,
        source=source,
        about=f"MMLU subjects {', '.join(subjects)} in lm-eval's zero-shot MMLU format",
    )


def _mmlu_doc(record: dict[str, Any], index: int, source: str) -> dict[str, Any]:
    where = f"{source or 'MMLU records'}, record {index}"
    question, choices, answer = record.get("question"), record.get("choices"), record.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise SuiteDataError(f"{where}, field 'question': expected a non-empty string")
    if not isinstance(choices, list) or len(choices) != 4 or not all(isinstance(c, str) for c in choices):
        raise SuiteDataError(f"{where}, field 'choices': expected a list of 4 strings")
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer <= 3:
        raise SuiteDataError(f"{where}, field 'answer': expected an integer 0-3, got {answer!r}")
    return {"question": question, "subject": record["subject"], "choices": choices, "answer": answer}


def read_mmlu(path: str | Path) -> list[dict[str, Any]]:
    """The rows of an MMLU JSON file (a list of objects, or JSON lines)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        rows = json.loads(text)
    except json.JSONDecodeError:
        try:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            raise SuiteDataError(f"{path}: neither a JSON list nor JSON lines ({error})") from error
    if not isinstance(rows, list):
        raise SuiteDataError(f"{path}: expected a JSON list of MMLU rows, got {type(rows).__name__}")
    return rows


def write_suite(tasks: Sequence[LocalTask], directory: str | Path) -> Path:
    """Write ``<name>.jsonl`` and ``<name>.yaml`` per task into ``directory`` (for ``--include_path``)."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        data_file = directory / f"{task.name}.jsonl"
        data_file.write_text("".join(json.dumps(doc, ensure_ascii=False) + "\n" for doc in task.docs), encoding="utf-8")
        (directory / f"{task.name}.yaml").write_text(
            yaml.safe_dump(task.yaml_config(data_file), sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
    return directory


def _unique(docs: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    seen: set[Any] = set()
    kept = []
    for doc in docs:
        if doc[key] not in seen:
            seen.add(doc[key])
            kept.append(doc)
    return kept
