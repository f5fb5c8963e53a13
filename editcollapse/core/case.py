"""`EditCase`: the one record every edit-case source is mapped to (see ARCHITECTURE.md, "Core types")."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class NeighborhoodPrompt:
    """An unrelated prompt whose answer the edit must not change."""

    prompt: str
    target: str


@dataclass(frozen=True)
class PortabilityPrompt:
    """A prompt whose answer should follow from the edited fact (one-hop reasoning, aliases …)."""

    prompt: str
    target_new: str
    target_true: str | None = None


@dataclass(frozen=True)
class EditCase:
    """One requested edit: make ``prompt`` (subject at ``{}``) complete to ``target_new``.

    ``case_id`` is stable across runs (``"<dataset>:<source id>"``); everything keyed by case
    (warehouse rows, deltas, HardCF) uses it.
    """

    case_id: str
    dataset: str
    prompt: str
    subject: str
    target_new: str
    target_true: str | None = None
    relation_id: str | None = None
    paraphrase_prompts: tuple[str, ...] = ()
    neighborhood: tuple[NeighborhoodPrompt, ...] = ()
    portability: tuple[PortabilityPrompt, ...] = ()
    generation_prompts: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)

    @property
    def filled_prompt(self) -> str:
        """The edit prompt with the subject filled in (``"{} is located in"`` → ``"Paris is located in"``)."""
        return self.prompt.replace("{}", self.subject)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (lists for tuples), the inverse of :meth:`from_dict`."""
        record = asdict(self)
        for key in ("paraphrase_prompts", "neighborhood", "portability", "generation_prompts"):
            record[key] = list(record[key])
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> EditCase:
        """Rebuild a case from :meth:`to_dict` output (e.g. a row of the ``cases`` table)."""
        return cls(
            case_id=record["case_id"],
            dataset=record["dataset"],
            prompt=record["prompt"],
            subject=record["subject"],
            target_new=record["target_new"],
            target_true=record.get("target_true"),
            relation_id=record.get("relation_id"),
            paraphrase_prompts=tuple(record.get("paraphrase_prompts") or ()),
            neighborhood=tuple(NeighborhoodPrompt(**n) for n in record.get("neighborhood") or ()),
            portability=tuple(PortabilityPrompt(**p) for p in record.get("portability") or ()),
            generation_prompts=tuple(record.get("generation_prompts") or ()),
            extra=dict(record.get("extra") or {}),
        )

    def to_row(self) -> dict[str, Any]:
        """A row of the warehouse ``cases`` table (its schema minus ``run_id``/``shard``):
        :meth:`to_dict` with ``extra`` as JSON text, so ragged extras never change the schema."""
        row = self.to_dict()
        row["extra"] = json.dumps(self.extra, sort_keys=True, ensure_ascii=False)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EditCase:
        """Rebuild a case from a ``cases`` table row (inverse of :meth:`to_row`)."""
        extra = row.get("extra")
        return cls.from_dict({**row, "extra": json.loads(extra) if isinstance(extra, str) else extra})
