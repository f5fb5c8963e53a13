"""Check each generated record against the paper's requirements; keep the reason for every rejection.

Checks, in order (the first failing one is the reason):
1. the four fields ``prompt, subject, target_new, ground_truth`` are present and strings;
2. the subject is one word (``subjects.is_single_word``: letters/digits only);
3. the subject occurs in the prompt as a whole word (case-sensitive: ROME locates its tokens there),
   the prompt has no braces and says more than the subject;
4. ``target_new`` and ``ground_truth`` look like nouns (``noun_problem``), differ, and neither
   repeats the subject ("DVD is owned by" → "DVD");
5. the record is not a copy of a seed example shown in the prompt;
6. its subject was not generated before, in this run or any earlier one (case-insensitive).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from editcollapse.stages.hardedit.prompt import SeedExample
from editcollapse.stages.hardedit.subjects import is_single_word

FIELDS = ("prompt", "subject", "target_new", "ground_truth")
MAX_OBJECT_WORDS = 5
ARTICLES = {"the", "a", "an"}
# Closed-class words that cannot head a noun phrase answer: pronouns, prepositions, conjunctions,
# auxiliaries and modals, negation, yes/no, a few adverbs. An answer made only of (or opening with)
# one of these is not a noun.
FUNCTION_WORDS = {
    "i",
    "you",
    "he",
    "she",
    "it",
    "we",
    "they",
    "me",
    "him",
    "her",
    "us",
    "them",
    "his",
    "its",
    "their",
    "our",
    "my",
    "your",
    "this",
    "that",
    "these",
    "those",
    "who",
    "whom",
    "which",
    "what",
    "where",
    "when",
    "in",
    "on",
    "at",
    "by",
    "for",
    "with",
    "from",
    "to",
    "of",
    "into",
    "onto",
    "about",
    "as",
    "than",
    "and",
    "or",
    "but",
    "nor",
    "so",
    "if",
    "because",
    "while",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "am",
    "has",
    "have",
    "had",
    "do",
    "does",
    "did",
    "can",
    "could",
    "will",
    "would",
    "shall",
    "should",
    "may",
    "might",
    "must",
    "not",
    "no",
    "never",
    "yes",
    "true",
    "false",
    "none",
    "null",
    "very",
    "also",
    "too",
    "just",
}


def noun_problem(text: str) -> str | None:
    """Why ``text`` is not a plausible noun (phrase) answer, or None.

    A pragmatic check, not a part-of-speech tagger (no tagger data is available offline): the
    answer must be 1–5 words with at least one letter, not a bare number, not a sentence or
    clause (no ``. ! ? ;`` at the end, no line break), not an ``-ly`` adverb, and neither made of
    nor opened by a closed-class function word (articles aside: "the Eiffel Tower" passes).
    """
    words = text.split()
    if not words:
        return "empty"
    if len(words) > MAX_OBJECT_WORDS:
        return f"{len(words)} words (a noun phrase has at most {MAX_OBJECT_WORDS})"
    if "\n" in text or text.rstrip()[-1] in ".!?;":
        return "reads as a sentence, not a noun"
    if not any(char.isalpha() for char in text):
        return "has no letter (a number or symbol, not a noun)"
    content = [w for w in words if w.casefold() not in ARTICLES] or words
    head = content[0].casefold().strip(",'\"")
    if head in FUNCTION_WORDS:
        return f"opens with the function word {content[0]!r}"
    if len(content) == 1 and head.endswith("ly") and head[:1].islower() and len(head) > 4:
        return f"{content[0]!r} reads as an adverb"
    return None


def _comparable(text: str) -> str:
    """Casefolded, article-free, whitespace-normalised form for equality checks."""
    words = [w for w in text.casefold().split() if w not in ARTICLES]
    return " ".join(words)


@dataclass(frozen=True)
class Verdict:
    """One generated record after validation. ``reason`` is empty exactly when ``valid``; otherwise
    it reads ``"<check>: <detail>"`` with check one of fields, single_word, subject_in_prompt,
    braces, relation, noun, different, object_is_subject, seed_copy, duplicate."""

    prompt: str
    subject: str
    target_new: str
    ground_truth: str
    valid: bool
    reason: str


def _field_problem(record: dict[str, Any]) -> str | None:
    for name in FIELDS:
        if name not in record:
            return f"fields: missing field {name!r}"
        if not isinstance(record[name], str):
            return f"fields: field {name!r} is {type(record[name]).__name__}, not a string"
    return None


def _content_problem(prompt: str, subject: str, target_new: str, ground_truth: str) -> str | None:
    if not is_single_word(subject):
        return f"single_word: subject {subject!r} is not a single word"
    if not re.search(rf"(?<!\w){re.escape(subject)}(?!\w)", prompt):
        return f"subject_in_prompt: subject {subject!r} does not occur in the prompt"
    if "{" in prompt or "}" in prompt:
        return "braces: the prompt contains { or } (the subject placeholder of EditCase)"
    if not prompt.replace(subject, "").strip(" '\u2019s"):
        return "relation: the prompt has no relation besides the subject"
    for name, value in (("target_new", target_new), ("ground_truth", ground_truth)):
        problem = noun_problem(value)
        if problem:
            return f"noun: {name} {value!r} is not a noun ({problem})"
    if _comparable(target_new) == _comparable(ground_truth):
        return "different: target_new equals ground_truth"
    for name, value in (("target_new", target_new), ("ground_truth", ground_truth)):
        if _comparable(value) == subject.casefold():
            return f"object_is_subject: {name} repeats the subject"
    return None


def validate_records(
    records: list[dict[str, Any]], seen_subjects: set[str], seeds: list[SeedExample] = ()
) -> list[Verdict]:
    """Verdicts for ``records`` in order; valid subjects are added to ``seen_subjects`` (casefolded).

    ``seen_subjects`` carries the subjects of all earlier generations, so a subject is accepted
    once across every run that shares the set.
    """
    seed_keys = {(_comparable(s.prompt), _comparable(s.target_new)) for s in seeds}
    verdicts = []
    for record in records:
        problem = _field_problem(record)
        values = {name: str(record.get(name, "")).strip() for name in FIELDS}
        if problem is None:
            problem = _content_problem(**values)
        if problem is None and (_comparable(values["prompt"]), _comparable(values["target_new"])) in seed_keys:
            problem = "seed_copy: copy of a seed example"
        if problem is None and values["subject"].casefold() in seen_subjects:
            problem = f"duplicate: subject {values['subject']!r} was generated before"
        if problem is None:
            seen_subjects.add(values["subject"].casefold())
        verdicts.append(Verdict(**values, valid=problem is None, reason=problem or ""))
    return verdicts
