"""Where each named data source lives: local data roots, public URLs, pinned checksums.

A *data root* is a folder laid out like ``shared/data`` (``counterfact/…``, ``zsre/…``,
``me-ppl/…``). Roots are searched in order: the folders in ``$EDITCOLLAPSE_DATA``
(``os.pathsep``-separated), then ``<cache>/data`` where downloads go. A source may have several
layouts (the canonical ROME ``counterfact.json`` or the three flat EasyEdit files): the first
layout found complete on disk wins; otherwise the layouts with URLs are downloaded in order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from editcollapse.core.paths import cache_dir
from editcollapse.datasets.download import ChecksumMismatch, DataUnavailable, fetch

_KS = "https://raw.githubusercontent.com/Jometeorie/KnowledgeSpread/d1a8d1ed5367e66010d4d9b081ab388b46c2438c/data"
_KS_ZSRE = "https://raw.githubusercontent.com/Jometeorie/KnowledgeSpread/51d7402617c2e52bde0dc11b76e400c3725a181a/data"
_RE = "https://raw.githubusercontent.com/WanliYoung/Revisit-Editing-Evaluation/d6025e0ee9731d3b59b84ea242dc06bf0e0c8a74/data"
_MEPPL = (
    "https://raw.githubusercontent.com/WanliYoung/Collapse-in-Model-Editing/"
    "ba8122e46ce31d3518a44e942540179cc7531f15/data/ME-PPL"
)


@dataclass(frozen=True)
class DataFile:
    """One released file: its place under a data root, public URL and sha256 (when pinned)."""

    relpath: str
    url: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Source:
    """A named data source: which dataset its records belong to and where its files are."""

    name: str
    dataset: str
    description: str
    layouts: tuple[tuple[DataFile, ...], ...]
    note: str = ""


_CF_ROME = DataFile("counterfact/counterfact.json", "https://rome.baulab.info/data/dsets/counterfact.json")
_CF_FLAT = (
    DataFile(
        "counterfact/counterfact-edit.json",
        f"{_KS}/counterfact/counterfact-edit.json",
        "20c225e6299b3c5b2c569bd9103aa212806e0d1e6e0c307de5c379773979b967",
    ),
    DataFile(
        "counterfact/counterfact-train.json",
        f"{_KS}/counterfact/counterfact-train.json",
        "f7d443ffb0c5da6cbe816cdac45281ccb3f204b8a840f00d07a4aafa949bcd76",
    ),
    DataFile(
        "counterfact/counterfact-val.json",
        f"{_KS}/counterfact/counterfact-val.json",
        "42b44645471020a9419d183deb9e113e82941380046861770ea0083dabd13982",
    ),
)


def _one_file(
    name: str,
    dataset: str,
    description: str,
    relpath: str,
    url: str | None = None,
    sha256: str | None = None,
    note: str = "",
) -> Source:
    """A source released as a single file."""
    return Source(name, dataset, description, ((DataFile(relpath, url, sha256),),), note)


SOURCES: dict[str, Source] = {
    source.name: source
    for source in (
        Source(
            "counterfact",
            "counterfact",
            "CounterFact, 21,919 counterfactual edits (ROME form or the three flat EasyEdit files)",
            ((_CF_ROME,), _CF_FLAT),
        ),
        _one_file(
            "multi-counterfact",
            "counterfact",
            "MEMIT's multi_counterfact.json (conflict-free subset)",
            "counterfact/multi_counterfact.json",
            "https://memit.baulab.info/data/dsets/multi_counterfact.json",
        ),
        _one_file(
            "zsre",
            "zsre",
            "ZsRE question answering edits, MEND eval split",
            "zsre/zsre_mend_eval.json",
            "https://rome.baulab.info/data/dsets/zsre_mend_eval.json",
        ),
        _one_file(
            "zsre-train-1k",
            "zsre",
            "1,000 records of the MEND ZsRE train split",
            "zsre/zsre_mend_train-1k.json",
            f"{_KS_ZSRE}/zsre/zsre_mend_train-1k.json",
            "e62596101d8ed551889c26c0d2a5277f92eaef3b14416d8eaee39b04a244ab60",
        ),
        _one_file(
            "qaedit",
            "qaedit",
            "QAEdit (NQ/TQA/SQA questions), the 1k subset",
            "qaedit/QAEdit_inter_1k.json",
            f"{_RE}/QAEdit_inter_1k.json",
            "640e1d279759263fdaae543a385680d21a55aa3597ca8b597ffd7937fef07c42",
        ),
        _one_file(
            "hardcf",
            "hardcf",
            "HardCF: CounterFact cases whose single ROME edit collapsed a model",
            "hardcf/HardCF.json",
            note="not public: the study's hardcf stage regenerates it",
        ),
        _one_file(
            "hardedit",
            "hardedit",
            "HardEdit: generated hard cases filtered by ROME perplexity",
            "hardedit/HardEdit.json",
            note="not public: the study's hardedit stage regenerates it",
        ),
        _one_file(
            "me-ppl-10k",
            "me-ppl",
            "ME-PPL, 10,000 English sentences from 7 corpora",
            "me-ppl/ME-PPL.json",
            f"{_MEPPL}/ME-PPL.json",
            "c09b3d8191ffad954bf3b5e96dac84a7caf83d57c15e262b1d81ef6590742fb4",
        ),
        _one_file(
            "me-ppl-1k",
            "me-ppl",
            "ME-PPL subset of 1,000 sentences (sequential editing)",
            "me-ppl/ME-PPL_1k.json",
            f"{_MEPPL}/ME-PPL_1k.json",
            "71e29fc5daf443b35ec16c8a9e91e1f4398b5b84ca7c25393639c066b65b5afb",
        ),
        _one_file(
            "me-ppl-50",
            "me-ppl",
            "ME-PPL subset of 50 sentences (single-edit sweeps)",
            "me-ppl/ME-PPL_50.json",
            f"{_MEPPL}/ME-PPL_50.json",
            "55f3b951d2c4287b90d9e511f256efb9d47461f0da408a17dac5ffcef685c4e4",
        ),
    )
}


def data_roots() -> list[Path]:
    """Folders searched for released files: ``$EDITCOLLAPSE_DATA`` entries, then the download cache."""
    roots = [Path(entry) for entry in os.environ.get("EDITCOLLAPSE_DATA", "").split(os.pathsep) if entry]
    return [*roots, download_root()]


def download_root() -> Path:
    """Where downloaded files are kept: ``<cache>/data``, laid out like a data root."""
    return cache_dir() / "data"


def _find_local(layout: tuple[DataFile, ...], roots: list[Path]) -> list[Path] | None:
    found = []
    for data_file in layout:
        hit = next((root / data_file.relpath for root in roots if (root / data_file.relpath).is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found


def locate(name: str, *, download: bool = True) -> list[Path]:
    """The local files of source ``name``, downloading them into the cache when needed and allowed.

    Raises :class:`DataUnavailable` with, for every layout, the files to put under a data root.
    """
    source = SOURCES[name]
    roots = data_roots()
    for layout in source.layouts:
        found = _find_local(layout, roots)
        if found is not None:
            return found
    failures: list[str] = []
    if download:
        for layout in source.layouts:
            if not all(data_file.url for data_file in layout):
                continue
            try:
                return [fetch(str(f.url), download_root() / f.relpath, sha256=f.sha256) for f in layout]
            except (DataUnavailable, ChecksumMismatch) as exc:
                failures.append(str(exc))
    raise DataUnavailable(_missing_message(source, roots, failures))


def _missing_message(source: Source, roots: list[Path], failures: list[str]) -> str:
    options = []
    for layout in source.layouts:
        files = ", ".join(f"{f.relpath}" + (f" (from {f.url})" if f.url else "") for f in layout)
        options.append(f"  - {files}")
    lines = [
        f"data source '{source.name}' ({source.description}) was not found.",
        f"Put one of these under a data root ({', '.join(str(r) for r in roots)}; "
        "set EDITCOLLAPSE_DATA to add a folder):",
        *options,
    ]
    if source.note:
        lines.append(f"Note: {source.note}.")
    lines.extend(f"Download failed: {failure}" for failure in failures)
    return "\n".join(lines)
