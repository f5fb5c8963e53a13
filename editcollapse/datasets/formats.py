"""Record formats of the public edit datasets, each mapped to :class:`EditCase`.

One parser per format; a parser raises :class:`FieldError` (field, reason) for a record it cannot
map, and :func:`editcollapse.datasets.loading.load_cases` turns that into an error row. Field
mappings follow the reference tools (ROME/MEMIT ``dsets``, EasyEdit):

* ``rome`` — CounterFact / multi_counterfact: ``requested_rewrite`` {prompt with ``{}``, subject,
  target_new.str, target_true.str, relation_id}; ``paraphrase_prompts``; ``neighborhood_prompts``
  (their expected answer is target_true: CounterFact picks neighbours sharing the true object);
  ``attribute_prompts`` (expected target_new) and ``pararel_idx`` go to ``extra``.
* ``easyedit-cf`` — the flat EasyEdit/MEND CounterFact files: ``prompt`` has the subject filled
  in and becomes a ``{}`` template at the subject's first occurrence; ground_truth → target_true;
  rephrase_prompt → paraphrase; locality_prompt/locality_ground_truth → neighbourhood.
* ``zsre`` — MEND JSON: src → prompt, alt → target_new, answers[0] → target_true, rephrase →
  paraphrase, (loc, loc_ans) → neighbourhood. ``loc`` keeps its ``"nq question: "`` prefix
  verbatim, as EasyEdit does (ROME even asserts the prefix is present).
* ``qaedit`` — id, source, prompt, target, subject, rephrase, locality[{loc, loc_ans}]; target →
  target_new, no target_true (QAEdit edits in the true answer the model lacks); ids are
  ``qaedit:<source>-<id>`` because ``id`` repeats across NQ/TQA/SQA.
* ``hardedit`` — HardCF/HardEdit: prompt, target_new, subject, ground_truth and per-model
  ``rome_*_ppl`` (kept in ``extra``).
* ``portability`` — CounterFact-style requests with ``portable_prompts`` [{prompt,
  portable_target_new, portable_target_true}] (the first answer of each list; the others in extra).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from editcollapse.core.case import EditCase, NeighborhoodPrompt, PortabilityPrompt


class FieldError(ValueError):
    """A record's field is missing or malformed."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _get(record: dict[str, Any], key: str, within: str = "") -> Any:
    """``record[key]``, or a FieldError naming ``<within>.<key>`` as missing."""
    if key not in record:
        raise FieldError(f"{within}.{key}" if within else key, "missing")
    return record[key]


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise FieldError(field, f"expected a string, got {type(value).__name__}")
    return value


def _target(value: Any, field: str) -> str:
    """A target given as a string, ``{"str": ...}`` (ROME) or a one-or-more element list."""
    if isinstance(value, dict):
        value = value.get("str")
    if isinstance(value, list):
        if not value:
            raise FieldError(field, "empty list")
        value = value[0]
    return _string(value, field)


def _strings(value: Any, field: str) -> tuple[str, ...]:
    """A list of prompts given as strings or ``{"prompt": ...}`` dicts (a lone string counts as one)."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list):
        raise FieldError(field, f"expected a list, got {type(value).__name__}")
    return tuple(
        _string(item.get("prompt") if isinstance(item, dict) else item, f"{field}[{i}]") for i, item in enumerate(value)
    )


def template(prompt: str, subject: str) -> str:
    """``prompt`` as a ``{}`` template: unchanged if it has one, else the subject's first occurrence."""
    if "{}" in prompt:
        return prompt
    at = prompt.find(subject) if subject else -1
    if at < 0:
        raise FieldError("subject", f"subject {subject!r} does not occur in prompt {prompt!r}")
    return prompt[:at] + "{}" + prompt[at + len(subject) :]


def case_id(dataset: str, record: dict[str, Any], index: int, tag: str) -> str:
    """``<dataset>:<id>`` from the record's own ``case_id``/``id``, else ``[<file tag>/]<index>``."""
    for key in ("case_id", "id"):
        if isinstance(record.get(key), (int, str)) and str(record[key]) != "":
            return f"{dataset}:{record[key]}"
    return f"{dataset}:{tag}/{index}" if tag else f"{dataset}:{index}"


def _case(
    record: dict[str, Any], dataset: str, index: int, tag: str, *, prompt: str, subject: str, **fields: Any
) -> EditCase:
    """An EditCase with the id, dataset and ``{}`` template every format derives the same way."""
    return EditCase(
        case_id=fields.pop("case_id", None) or case_id(dataset, record, index, tag),
        dataset=dataset,
        prompt=template(prompt, subject),
        subject=subject,
        **fields,
    )


def parse_rome(record: dict[str, Any], dataset: str, index: int, tag: str) -> EditCase:
    """CounterFact in the original ROME/MEMIT form (``requested_rewrite``)."""
    rewrite = _get(record, "requested_rewrite")
    if isinstance(rewrite, list):
        if len(rewrite) != 1:
            raise FieldError("requested_rewrite", f"{len(rewrite)} rewrites in one record; expected 1")
        rewrite = rewrite[0]
    if not isinstance(rewrite, dict):
        raise FieldError("requested_rewrite", f"expected an object, got {type(rewrite).__name__}")
    subject = _string(_get(rewrite, "subject", "requested_rewrite"), "requested_rewrite.subject")
    target_true = _target(_get(rewrite, "target_true", "requested_rewrite"), "requested_rewrite.target_true")
    target_new = _target(_get(rewrite, "target_new", "requested_rewrite"), "requested_rewrite.target_new")
    extra: dict[str, Any] = {}
    for key in ("pararel_idx",):
        if key in record:
            extra[key] = record[key]
    for key in ("target_new", "target_true"):
        if isinstance(rewrite[key], dict) and "id" in rewrite[key]:
            extra[f"{key}_id"] = rewrite[key]["id"]
    if record.get("attribute_prompts"):
        extra["attribute_prompts"] = list(_strings(record["attribute_prompts"], "attribute_prompts"))
    return _case(
        record,
        dataset,
        index,
        tag,
        prompt=_string(_get(rewrite, "prompt", "requested_rewrite"), "requested_rewrite.prompt"),
        subject=subject,
        target_new=target_new,
        target_true=target_true,
        relation_id=rewrite.get("relation_id"),
        paraphrase_prompts=_strings(record.get("paraphrase_prompts", []), "paraphrase_prompts"),
        neighborhood=tuple(
            NeighborhoodPrompt(p, target_true)
            for p in _strings(record.get("neighborhood_prompts", []), "neighborhood_prompts")
        ),
        generation_prompts=_strings(record.get("generation_prompts", []), "generation_prompts"),
        extra=extra,
    )


def parse_easyedit_cf(record: dict[str, Any], dataset: str, index: int, tag: str) -> EditCase:
    """The flat EasyEdit/MEND CounterFact form (subject filled into ``prompt``)."""
    subject = _string(_get(record, "subject"), "subject")
    neighborhood: tuple[NeighborhoodPrompt, ...] = ()
    if record.get("locality_prompt") is not None:
        neighborhood = (
            NeighborhoodPrompt(
                _string(record["locality_prompt"], "locality_prompt"),
                _target(_get(record, "locality_ground_truth"), "locality_ground_truth"),
            ),
        )
    return _case(
        record,
        dataset,
        index,
        tag,
        prompt=_string(_get(record, "prompt"), "prompt"),
        subject=subject,
        target_new=_target(_get(record, "target_new"), "target_new"),
        target_true=_target(_get(record, "ground_truth"), "ground_truth"),
        relation_id=record.get("relation_id"),
        paraphrase_prompts=_strings(record.get("rephrase_prompt", []), "rephrase_prompt"),
        neighborhood=neighborhood,
    )


def parse_zsre(record: dict[str, Any], dataset: str, index: int, tag: str) -> EditCase:
    """ZsRE in the MEND JSON form."""
    subject = _string(_get(record, "subject"), "subject")
    answers = _get(record, "answers")
    if not isinstance(answers, list) or not answers:
        raise FieldError("answers", "expected a non-empty list")
    extra = {key: record[key] for key in ("pred", "cond") if key in record}
    if len(answers) > 1:
        extra["answers"] = list(answers)
    return _case(
        record,
        dataset,
        index,
        tag,
        prompt=_string(_get(record, "src"), "src"),
        subject=subject,
        target_new=_target(_get(record, "alt"), "alt"),
        target_true=_target(answers, "answers"),
        paraphrase_prompts=_strings(record.get("rephrase", []), "rephrase"),
        neighborhood=(
            NeighborhoodPrompt(_string(_get(record, "loc"), "loc"), _target(_get(record, "loc_ans"), "loc_ans")),
        ),
        extra=extra,
    )


def parse_qaedit(record: dict[str, Any], dataset: str, index: int, tag: str) -> EditCase:
    """QAEdit (Mirage of Model Editing): questions with the true answer as the edit target."""
    subject = _string(_get(record, "subject"), "subject")
    locality = record.get("locality") or []
    if not isinstance(locality, list):
        raise FieldError("locality", f"expected a list, got {type(locality).__name__}")
    neighborhood = []
    for i, item in enumerate(locality):
        if not isinstance(item, dict):
            raise FieldError(f"locality[{i}]", "expected an object with loc and loc_ans")
        neighborhood.append(
            NeighborhoodPrompt(
                _string(item.get("loc"), f"locality[{i}].loc"), _target(item.get("loc_ans"), f"locality[{i}].loc_ans")
            )
        )
    # QAEdit ids are unique only within a source (NQ 3368 and TQA 3368 are different questions).
    qa_id = f"{record['source']}-{record['id']}" if "source" in record and "id" in record else None
    return _case(
        record,
        dataset,
        index,
        tag,
        case_id=f"{dataset}:{qa_id}" if qa_id else None,
        prompt=_string(_get(record, "prompt"), "prompt"),
        subject=subject,
        target_new=_target(_get(record, "target"), "target"),
        target_true=None,
        paraphrase_prompts=_strings(record.get("rephrase", []), "rephrase"),
        neighborhood=tuple(neighborhood),
        extra={"source": record["source"]} if "source" in record else {},
    )


def parse_hardedit(record: dict[str, Any], dataset: str, index: int, tag: str) -> EditCase:
    """HardCF / HardEdit: CounterFact-like fields plus each model's post-edit perplexity."""
    subject = _string(_get(record, "subject"), "subject")
    known = {"case_id", "id", "prompt", "subject", "target_new", "ground_truth", "target_true", "relation_id"}
    true_key = "ground_truth" if "ground_truth" in record else "target_true"
    return _case(
        record,
        dataset,
        index,
        tag,
        prompt=_string(_get(record, "prompt"), "prompt"),
        subject=subject,
        target_new=_target(_get(record, "target_new"), "target_new"),
        target_true=_target(_get(record, true_key), true_key),
        relation_id=record.get("relation_id"),
        extra={key: value for key, value in record.items() if key not in known},
    )


def parse_portability(record: dict[str, Any], dataset: str, index: int, tag: str) -> EditCase:
    """CounterFact-style requests with portability prompts (one-hop questions on the new fact)."""
    subject = _string(_get(record, "subject"), "subject")
    target_true = _target(_get(record, "target_true"), "target_true")
    prompts = _get(record, "portable_prompts")
    if not isinstance(prompts, list):
        raise FieldError("portable_prompts", f"expected a list, got {type(prompts).__name__}")
    portability, alternatives = [], {}
    for i, item in enumerate(prompts):
        if not isinstance(item, dict):
            raise FieldError(f"portable_prompts[{i}]", "expected an object")
        new = _get(item, "portable_target_new")
        true = item.get("portable_target_true")
        portability.append(
            PortabilityPrompt(
                _string(item.get("prompt"), f"portable_prompts[{i}].prompt"),
                _target(new, f"portable_prompts[{i}].portable_target_new"),
                _target(true, f"portable_prompts[{i}].portable_target_true") if true else None,
            )
        )
        if isinstance(new, list) and len(new) > 1:
            alternatives[str(i)] = list(new)
    return _case(
        record,
        dataset,
        index,
        tag,
        prompt=_string(_get(record, "prompt"), "prompt"),
        subject=subject,
        target_new=_target(_get(record, "target_new"), "target_new"),
        target_true=target_true,
        relation_id=record.get("relation_id"),
        paraphrase_prompts=_strings(record.get("paraphrase_prompts", []), "paraphrase_prompts"),
        neighborhood=tuple(
            NeighborhoodPrompt(p, target_true)
            for p in _strings(record.get("neighborhood_prompts", []), "neighborhood_prompts")
        ),
        portability=tuple(portability),
        extra={"portable_target_new_alternatives": alternatives} if alternatives else {},
    )


Parser = Callable[[dict[str, Any], str, int, str], EditCase]

#: format name → (dataset a file of this format belongs to by default, parser)
FORMATS: dict[str, tuple[str, Parser]] = {
    "rome": ("counterfact", parse_rome),
    "easyedit-cf": ("counterfact", parse_easyedit_cf),
    "zsre": ("zsre", parse_zsre),
    "qaedit": ("qaedit", parse_qaedit),
    "hardedit": ("hardedit", parse_hardedit),
    "portability": ("portability", parse_portability),
}


def detect_format(record: Any) -> str | None:
    """The format of one record, judged by its keys (``None`` when none fits)."""
    if not isinstance(record, dict):
        return None
    keys = record.keys()
    if "portable_prompts" in keys:
        return "portability"
    if "requested_rewrite" in keys:
        return "rome"
    if {"src", "alt", "answers"} <= keys:
        return "zsre"
    if {"target", "rephrase"} <= keys and "target_new" not in keys:
        return "qaedit"
    if {"prompt", "target_new", "subject"} <= keys:
        return "easyedit-cf" if {"rephrase_prompt", "locality_prompt"} & keys else "hardedit"
    return None
