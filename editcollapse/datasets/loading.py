"""`load_cases`: any edit-case source → validated :class:`EditCase` records plus error rows.

One bad record never stops a load: it becomes a :class:`CaseError` (file, index, field, reason)
and the rest load on; ``strict=True`` raises :class:`DatasetError` instead once the scan is done.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from editcollapse.core.case import EditCase
from editcollapse.datasets.formats import FORMATS, FieldError, detect_format
from editcollapse.datasets.sources import SOURCES, locate

GENERATED = ("geofacts",)


@dataclass(frozen=True)
class CaseError:
    """Why one record was not loaded."""

    file: str
    index: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}[{self.index}] {self.field}: {self.reason}"


@dataclass
class CaseLoad:
    """The cases that loaded and the records that did not."""

    cases: list[EditCase]
    errors: list[CaseError] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


class DatasetError(ValueError):
    """A source cannot be read at all, or (strict mode) some of its records are invalid."""

    def __init__(self, message: str, errors: list[CaseError] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


def validate_case(case: EditCase) -> list[tuple[str, str]]:
    """Problems with a case as (field, reason); empty when it is usable for editing."""
    problems: list[tuple[str, str]] = []
    placeholders = case.prompt.count("{}") if isinstance(case.prompt, str) else -1
    if placeholders != 1:
        problems.append(("prompt", f"needs exactly one '{{}}' for the subject, has {placeholders}"))
    if not isinstance(case.subject, str) or not case.subject.strip():
        problems.append(("subject", "empty"))
    if not isinstance(case.target_new, str) or not case.target_new.strip():
        problems.append(("target_new", "empty"))
    if case.target_true is not None:
        if not isinstance(case.target_true, str) or not case.target_true.strip():
            problems.append(("target_true", "empty (use null when unknown)"))
        elif (
            isinstance(case.target_new, str)
            and case.target_true.strip().casefold() == case.target_new.strip().casefold()
        ):
            problems.append(("target_new", f"equals target_true {case.target_true!r}: not an edit"))
    for i, prompt in enumerate(case.paraphrase_prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            problems.append((f"paraphrase_prompts[{i}]", "empty or not a string"))
    for i, neighbor in enumerate(case.neighborhood):
        if not isinstance(neighbor.prompt, str) or not neighbor.prompt.strip():
            problems.append((f"neighborhood[{i}].prompt", "empty or not a string"))
        if not isinstance(neighbor.target, str) or not neighbor.target.strip():
            problems.append((f"neighborhood[{i}].target", "empty or not a string"))
    for i, portable in enumerate(case.portability):
        if not isinstance(portable.prompt, str) or not portable.prompt.strip():
            problems.append((f"portability[{i}].prompt", "empty or not a string"))
        if not isinstance(portable.target_new, str) or not portable.target_new.strip():
            problems.append((f"portability[{i}].target_new", "empty or not a string"))
    return problems


def read_records(path: Path) -> list[Any]:
    """The records of a JSON list file or a JSON Lines file."""
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        records = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read JSON ({exc})") from exc
    if not isinstance(records, list):
        raise DatasetError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    return records


def _file_tag(path: Path, dataset: str) -> str:
    """Short name of a file for ids of records without their own (``zsre_mend_eval`` → ``eval``;
    empty when the file is named after its dataset, ``HardEdit.json``)."""
    tag = path.stem.lower()
    if tag == dataset:
        return ""
    for prefix in (f"{dataset}_mend_", f"{dataset}_", f"{dataset}-"):
        if tag.startswith(prefix) and len(tag) > len(prefix):
            return tag[len(prefix) :]
    return tag


def parse_file(path: Path, dataset: str | None = None) -> Iterator[tuple[int, EditCase | list[CaseError]]]:
    """Each record of ``path`` as (index, validated case or its error rows), in file order."""
    records = read_records(path)
    if not records:
        return
    fmt = next((f for f in map(detect_format, records[:20]) if f), None)
    if fmt is None:
        first = sorted(records[0]) if isinstance(records[0], dict) else type(records[0]).__name__
        raise DatasetError(
            f"{path}: record format not recognised (first record: {first}); known formats: {', '.join(FORMATS)}"
        )
    default_dataset, parser = FORMATS[fmt]
    dataset = dataset or default_dataset
    tag = _file_tag(path, dataset)
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            yield index, [CaseError(str(path), index, "", f"expected an object, got {type(record).__name__}")]
            continue
        try:
            case = parser(record, dataset, index, tag)
        except FieldError as exc:
            yield index, [CaseError(str(path), index, exc.field, exc.reason)]
            continue
        problems = validate_case(case)
        yield index, [CaseError(str(path), index, f, reason) for f, reason in problems] if problems else case


def _source_files(source: str, download: bool) -> tuple[list[Path], str | None]:
    if source in SOURCES:
        return locate(source, download=download), SOURCES[source].dataset
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl") and p.is_file())
        if not files:
            raise DatasetError(f"{path}: folder holds no .json/.jsonl files")
        return files, None
    if path.is_file():
        return [path], None
    known = ", ".join([*GENERATED, *SOURCES])
    raise DatasetError(f"unknown data source '{source}' — use a known name ({known}) or an existing file or folder")


def check_source(source: str) -> None:
    """Raise what :func:`load_cases` would when ``source`` names no cases here (an unknown name, a
    missing file, a released file that is neither on disk nor downloadable), without reading them:
    a run's preflight. A released file is downloaded into the cache now, as the run would."""
    if source not in GENERATED:
        _source_files(source, download=True)


def load_cases(
    source: str,
    *,
    limit: int | None = None,
    strict: bool = False,
    seed: int = 0,
    dataset: str | None = None,
    download: bool = True,
) -> CaseLoad:
    """Load edit cases from a named source, a file or a folder of files.

    ``limit`` keeps the first N valid cases (file order). ``seed`` only matters for generated
    sources (``geofacts``). ``dataset`` overrides the dataset name (and id prefix) a file's format
    implies, e.g. ``"hardcf"`` for a file in the HardEdit form. Ids must be unique across a load:
    a repeated id is an error row.
    """
    if source in GENERATED:
        from editcollapse.datasets.geofacts import build_geofacts

        cases = build_geofacts(seed=seed)
        problems = [CaseError(source, i, f, r) for i, case in enumerate(cases) for f, r in validate_case(case)]
        if problems:
            raise DatasetError(f"{source}: generator produced {len(problems)} invalid cases", problems)
        return CaseLoad(cases[:limit] if limit is not None else cases, [], [source])
    files, named_dataset = _source_files(source, download)
    load = CaseLoad(cases=[], files=[str(f) for f in files])
    first_seen: dict[str, str] = {}
    for path in files:
        for index, item in parse_file(path, dataset or named_dataset):
            if isinstance(item, list):
                load.errors.extend(item)
                continue
            where = f"{path}[{index}]"
            if item.case_id in first_seen:
                load.errors.append(
                    CaseError(
                        str(path),
                        index,
                        "case_id",
                        f"duplicate id {item.case_id} (first at {first_seen[item.case_id]})",
                    )
                )
                continue
            first_seen[item.case_id] = where
            load.cases.append(item)
            if limit is not None and len(load.cases) >= limit:
                break
        if limit is not None and len(load.cases) >= limit:
            break
    if strict and load.errors:
        shown = "\n".join(f"  {e}" for e in load.errors[:10])
        raise DatasetError(f"{source}: {len(load.errors)} invalid record field(s):\n{shown}", load.errors)
    return load
