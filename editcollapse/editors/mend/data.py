"""MEND's training data: a seeded, disjoint train / held-out split and a stable data id.

``geofacts`` (the embedded default) is split by *subject*: every case of a held-out subject is
held out, so no held-out subject is ever edited in training (the split is disjoint by case id and
by subject). A named source or a file (ZsRE train, CounterFact train, …) is split the same way
unless ``val_data`` names a separate held-out file. The data id names the source, the split and a
digest of the cases' content, so a network is reused only for the data it was trained on.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from editcollapse.core.case import EditCase
from editcollapse.editors.mend.hparams import MENDHparams


@dataclass(frozen=True)
class MENDData:
    """Training and held-out cases and the id of the split."""

    data_id: str
    train: list[EditCase]
    val: list[EditCase]


def _digest(cases: list[EditCase]) -> str:
    digest = hashlib.sha256()
    for case in cases:
        digest.update(json.dumps(case.to_dict(), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:10]


def _label(source: str) -> str:
    path = Path(source).expanduser()
    return path.stem if path.suffix else path.name or source


def split_by_subject(cases: list[EditCase], val_fraction: float, seed: int) -> tuple[list[EditCase], list[EditCase]]:
    """(train, held-out): a seeded ``val_fraction`` of the subjects, with all their cases, held out."""
    subjects = sorted({case.subject for case in cases})
    random.Random(seed).shuffle(subjects)
    n_val = max(1, round(len(subjects) * val_fraction))
    held_out = set(subjects[:n_val])
    return ([c for c in cases if c.subject not in held_out], [c for c in cases if c.subject in held_out])


def usable(case: EditCase) -> bool:
    """A case MEND can train on: an edit target and a locality prompt."""
    return bool(case.neighborhood)


def load_mend_data(settings: MENDHparams, *, dataset: str | None = None, val_dataset: str | None = None) -> MENDData:
    """The split MEND trains and validates on (``dataset``/``val_dataset`` override the hparams)."""
    from editcollapse.datasets import load_cases

    source = dataset or settings.train_data
    val_source = val_dataset if val_dataset is not None else settings.val_data
    cases = [c for c in load_cases(source).cases if usable(c)]
    if val_source:
        val = [c for c in load_cases(val_source).cases if usable(c)]
        train_ids = {c.case_id for c in cases}
        val = [c for c in val if c.case_id not in train_ids]
        train = cases
        data_id = f"{_label(source)}-{_digest(train)}+{_label(val_source)}-{_digest(val)}"
    else:
        train, val = split_by_subject(cases, settings.val_fraction, settings.split_seed)
        data_id = f"{_label(source)}-split{settings.split_seed}-v{settings.val_fraction:g}-{_digest(cases)}"
    if not train or not val:
        raise ValueError(
            f"MEND data {source!r}: {len(train)} training and {len(val)} held-out cases "
            "with locality prompts; both must be non-empty"
        )
    return MENDData(data_id=data_id, train=train, val=val)
