"""The HardEdit generation loop: prompt → chat backend → parse → validate, one call at a time.

Each call draws fresh reference subjects, lists every subject generated so far (this run and the
earlier runs passed in) as excluded, and yields one ``CallOutcome`` holding the raw response and a
verdict per parsed record. A call whose request fails for good, or whose answer holds no JSON,
still yields an outcome (with the reason), so the stored log accounts for every call.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from editcollapse.stages.hardedit.backends import BudgetExhausted, ChatBackend, GenerationFailed
from editcollapse.stages.hardedit.parse import extract_records
from editcollapse.stages.hardedit.prompt import SeedExample, build_prompt
from editcollapse.stages.hardedit.subjects import SubjectRepository
from editcollapse.stages.hardedit.validate import Verdict, validate_records


def candidate_id(prompt: str, subject: str, target_new: str, ground_truth: str) -> str:
    """A stable id from the record's content, so a candidate keeps its id across tables and runs."""
    digest = hashlib.sha256("\x1f".join((prompt, subject, target_new, ground_truth)).encode()).hexdigest()
    return f"hardedit:{digest[:16]}"


@dataclass
class CallOutcome:
    """One generation call: what was asked, what came back, and the verdict on each record."""

    call_index: int
    subjects_offered: list[str]
    prompt: str
    backend: str
    model: str | None = None
    raw_response: str | None = None
    response_text: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 0
    failure: str | None = None  # request failed for good, or no JSON record could be read
    parse_errors: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)


@dataclass
class GenerationSettings:
    """What shapes each prompt."""

    n_calls: int
    subjects_per_prompt: int = 10
    n_points: int = 10
    seed: int = 0


def generate(
    backend: ChatBackend,
    *,
    repository: SubjectRepository,
    seeds: list[SeedExample],
    template: str,
    settings: GenerationSettings,
    previous_subjects: list[str] = (),
    skip: set[int] | frozenset[int] = frozenset(),
) -> Iterator[CallOutcome]:
    """Run calls ``0 .. n_calls-1`` (minus ``skip``, the ones a resumed run already stored),
    yielding each outcome as soon as it is known.

    Stops early when the backend's budget is spent. ``previous_subjects`` (earlier calls' and
    runs' valid subjects) are excluded in the prompt and rejected as duplicates. Each call draws
    its reference subjects from its own generator (seeded by ``seed`` and the call index), so a
    resumed run offers the same subjects a fresh one would have, up to the excluded ones.
    """
    excluded = list(dict.fromkeys(previous_subjects))
    seen = {subject.casefold() for subject in excluded}
    for call_index in range(settings.n_calls):
        if call_index in skip:
            continue
        rng = random.Random(f"{settings.seed}:{call_index}")
        offered = repository.sample(settings.subjects_per_prompt, rng, exclude=seen)
        prompt = build_prompt(template, seeds, offered, excluded, settings.n_points)
        outcome = CallOutcome(call_index=call_index, subjects_offered=offered, prompt=prompt, backend=backend.name)
        try:
            reply = backend.complete([{"role": "user", "content": prompt}])
        except BudgetExhausted:
            return
        except GenerationFailed as error:
            outcome.failure = f"request failed: {error}"
            outcome.attempts = len(error.errors)
            yield outcome
            continue
        outcome.model, outcome.raw_response, outcome.response_text = reply.model, reply.raw, reply.text
        outcome.prompt_tokens, outcome.completion_tokens = reply.prompt_tokens, reply.completion_tokens
        outcome.attempts = reply.attempts
        parsed = extract_records(reply.text)
        outcome.parse_errors = parsed.errors
        outcome.verdicts = validate_records(parsed.records, seen, seeds)
        excluded.extend(v.subject for v in outcome.verdicts if v.valid)
        if not parsed.records:
            outcome.failure = "no JSON record: " + "; ".join(parsed.errors)
        yield outcome


def invocation_counts(outcomes: list[CallOutcome]) -> dict[str, int]:
    """What this invocation spent: calls made, requests sent (retries included), tokens."""
    return {
        "calls": len(outcomes),
        "requests": sum(o.attempts for o in outcomes),
        "prompt_tokens": sum(o.prompt_tokens or 0 for o in outcomes),
        "completion_tokens": sum(o.completion_tokens or 0 for o in outcomes),
    }


def record_counts(rows: list[dict[str, Any]]) -> dict[str, object]:
    """A run's verdicts from its stored ``hardedit_candidates`` rows (so a resumed run counts the
    calls stored before it too): calls without a record, records parsed, valid before and after
    dedupe, rejections by check."""
    records = [row for row in rows if row["sample_index"] >= 0]
    reasons = Counter(row["reject_reason"].split(":", 1)[0] for row in records if not row["valid"])
    valid = sum(1 for row in records if row["valid"])
    return {
        "failed_calls": sum(1 for row in rows if row["sample_index"] < 0),
        "records_parsed": len(records),
        "valid_before_dedupe": valid + reasons.get("duplicate", 0),
        "unique_valid": valid,
        "rejected_by_reason": dict(reasons.most_common()),
    }
