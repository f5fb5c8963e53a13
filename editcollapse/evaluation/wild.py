"""WILD evaluation (Yang et al. 2025, "The Mirage of Model Editing"): score what the model *generates*.

Teacher-forced metrics feed the gold answer to the model; WILD instead lets the model answer the
question greedily in a realistic context, stops at the natural end of the answer, and scores the
answer text:

* context types — ``question-only`` (the bare question), ``qa-inst`` ("Please answer the
  question:\\n\\nQ: {question}\\nA:") and ``chat-template`` (the tokenizer's chat template with a
  system message and the QA instruction as the user turn), as in the paper's code;
* generation — greedy, at most 50 new tokens, stopped at the first ``.`` or newline (or EOS);
  like the reference, an answer containing a period ("St. Louis", "3.5") is cut there;
* scores — exact match and token F1 after SQuAD normalisation (lower case, no punctuation, no
  articles, single spaces), and optionally an LLM judge (:mod:`editcollapse.evaluation.judge`);
  a record's ``score`` is the judge's verdict when a judge is given, else exact match.

Kinds: ``rewrite`` (edit prompt → target_new), ``rephrase`` (paraphrases → target_new) and
``locality`` (neighborhood prompts → their expected answer). :func:`wild_locality` compares the
pre- and post-edit locality answers: the share left unchanged.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from editcollapse.core.case import EditCase
from editcollapse.evaluation.generation import greedy_generate
from editcollapse.evaluation.judge import LLMJudge

CONTEXT_TYPES = ("question-only", "qa-inst", "chat-template")
_ALIASES = {"question_only": "question-only", "qa_inst": "qa-inst", "chat_temp": "chat-template"}
QA_INSTRUCTION = "Please answer the question:\n\nQ: {question}\nA:"
SYSTEM_MESSAGE = "You are a helpful, respectful and honest assistant."
STOP_STRINGS = (".", "\n")
_PUNCTUATION = frozenset(string.punctuation)
MAX_NEW_TOKENS = 50


@dataclass(frozen=True)
class WildRecord:
    """One generated answer and its scores."""

    case_id: str
    kind: str  # rewrite | rephrase | locality
    context_type: str
    question: str
    gold: str
    answer: str
    exact_match: float
    f1: float
    judge: float | None  # the LLM judge's verdict (NaN: unparseable reply); None: no judge
    score: float  # judge when given, else exact_match


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 of the normalised answers (1.0 when both are empty)."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def canonical_context_type(context_type: str) -> str:
    """The canonical name of a context type (EasyEdit's ``qa_inst``/``chat_temp`` are accepted)."""
    name = _ALIASES.get(context_type, context_type)
    if name not in CONTEXT_TYPES:
        raise ValueError(f"unknown context type {context_type!r}: use one of {', '.join(CONTEXT_TYPES)}")
    return name


def build_input(tokenizer: PreTrainedTokenizerBase, question: str, context_type: str) -> str:
    """The text the model continues for ``question`` under ``context_type``."""
    name = canonical_context_type(context_type)
    if name == "question-only":
        return question
    instruction = QA_INSTRUCTION.format(question=question)
    if name == "qa-inst":
        return instruction
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "context type chat-template needs a tokenizer with a chat template "
            "(a chat/instruct model); this tokenizer has none"
        )
    messages = [{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": instruction}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _items(case: EditCase) -> list[tuple[str, str, str]]:
    items = [("rewrite", case.filled_prompt, case.target_new)]
    items += [("rephrase", prompt, case.target_new) for prompt in case.paraphrase_prompts]
    items += [("locality", n.prompt, n.target) for n in case.neighborhood]
    return items


def wild_evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    cases: Sequence[EditCase],
    *,
    context_type: str = "question-only",
    judge: LLMJudge | None = None,
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = 8,
) -> list[WildRecord]:
    """Generate and score the rewrite, rephrase and locality answers of every case."""
    name = canonical_context_type(context_type)
    items = [(case.case_id, *item) for case in cases for item in _items(case)]
    inputs = [build_input(tokenizer, question, name) for _, _, question, _ in items]
    answers = greedy_generate(
        model,
        tokenizer,
        inputs,
        max_new_tokens=max_new_tokens,
        stop_strings=STOP_STRINGS,
        batch_size=batch_size,
        add_special_tokens=name != "chat-template",
    )
    records = []
    for (case_id, kind, question, gold), raw in zip(items, answers, strict=True):
        answer = raw.strip()
        em = exact_match(answer, gold)
        verdict = judge.grade(question, gold, answer) if judge is not None else None
        records.append(
            WildRecord(
                case_id=case_id,
                kind=kind,
                context_type=name,
                question=question,
                gold=gold,
                answer=answer,
                exact_match=em,
                f1=token_f1(answer, gold),
                judge=verdict,
                score=em if verdict is None else verdict,
            )
        )
    return records


def wild_summary(records: Sequence[WildRecord]) -> dict[str, dict[str, float]]:
    """Per case: mean ``score`` and ``f1`` of each kind (``rewrite_acc``, ``rewrite_f1``, …)."""
    grouped: dict[str, dict[str, list[WildRecord]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        grouped[record.case_id][record.kind].append(record)
    summary: dict[str, dict[str, float]] = {}
    for case_id, kinds in grouped.items():
        summary[case_id] = {}
        for kind, group in kinds.items():
            summary[case_id][f"{kind}_acc"] = math.fsum(r.score for r in group) / len(group)
            summary[case_id][f"{kind}_f1"] = math.fsum(r.f1 for r in group) / len(group)
    return summary


def wild_locality(pre: Sequence[WildRecord], post: Sequence[WildRecord]) -> dict[str, float]:
    """Per case: share of locality answers whose normalised text the edit left unchanged."""
    before = {(r.case_id, r.question): r.answer for r in pre if r.kind == "locality"}
    unchanged: dict[str, list[float]] = defaultdict(list)
    for record in post:
        if record.kind != "locality":
            continue
        key = (record.case_id, record.question)
        if key not in before:
            raise ValueError(f"no pre-edit locality answer for case {record.case_id!r}: {record.question!r}")
        unchanged[record.case_id].append(exact_match(record.answer, before[key]))
    return {case_id: math.fsum(values) / len(values) for case_id, values in unchanged.items()}
