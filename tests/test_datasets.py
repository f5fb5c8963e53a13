"""Edit-case loaders: exact field mapping on hand-written files in every form, planted bad
records found, real files counted, the cases-table row form."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from editcollapse.datasets import CaseError, DatasetError, EditCase, NeighborhoodPrompt, PortabilityPrompt, load_cases
from editcollapse.datasets.formats import template

DATA = Path(__file__).parent / "data" / "datasets"


def _errors(load, index: int) -> list[tuple[str, str]]:
    return [(e.field, e.reason) for e in load.errors if e.index == index]


def test_rome_form_maps_every_field() -> None:
    load = load_cases(str(DATA / "rome_counterfact.json"))
    first = load.cases[0]
    assert first == EditCase(
        case_id="counterfact:0",
        dataset="counterfact",
        prompt="The mother tongue of {} is",
        subject="Danielle Darrieux",
        target_new="English",
        target_true="French",
        relation_id="P103",
        paraphrase_prompts=(
            "Shayna does this and Yossel goes still and dies. Danielle Darrieux, a native",
            "An album was recorded for Capitol Nashville but never released. Danielle Darrieux spoke the language",
        ),
        neighborhood=(
            NeighborhoodPrompt("The mother tongue of Léon Blum is", "French"),
            NeighborhoodPrompt("The native language of Montesquieu is", "French"),
        ),
        generation_prompts=(
            "Danielle Darrieux's mother tongue is",
            "Where Danielle Darrieux is from, people speak the language of",
        ),
        extra={
            "pararel_idx": 2796,
            "target_new_id": "Q1860",
            "target_true_id": "Q150",
            "attribute_prompts": [
                "J.\u00a0R.\u00a0R. Tolkien is a native speaker of",
                "The mother tongue of Douglas Adams is",
            ],
        },
    )
    assert first.filled_prompt == "The mother tongue of Danielle Darrieux is"
    # multi_counterfact-style list of one rewrite
    second = load.cases[1]
    assert (second.case_id, second.prompt, second.target_new, second.target_true) == (
        "counterfact:1",
        "{}, the",
        "piano",
        "guitar",
    )
    assert second.neighborhood == (NeighborhoodPrompt("John Lennon performs on the", "guitar"),)


def test_rome_form_planted_bad_records() -> None:
    load = load_cases(str(DATA / "rome_counterfact.json"))
    assert [c.case_id for c in load.cases] == ["counterfact:0", "counterfact:1"]
    assert _errors(load, 2) == [("target_new", "equals target_true 'christianity ': not an edit")]
    assert _errors(load, 3)[0][0] == "subject" and "does not occur in prompt" in _errors(load, 3)[0][1]
    assert _errors(load, 4) == [("requested_rewrite.target_true", "missing")]
    assert _errors(load, 5) == [("", "expected an object, got str")]
    assert _errors(load, 6)[0][0] == "case_id" and "duplicate id counterfact:0" in _errors(load, 6)[0][1]
    assert all(e.file == str(DATA / "rome_counterfact.json") for e in load.errors)


def test_strict_mode_raises_with_the_error_rows() -> None:
    with pytest.raises(DatasetError) as info:
        load_cases(str(DATA / "rome_counterfact.json"), strict=True)
    assert len(info.value.errors) == 5
    assert "rome_counterfact.json[3] subject" in str(info.value)


def test_zsre_mend_form_maps_every_field() -> None:
    load = load_cases(str(DATA / "zsre_mend_eval.json"))
    assert load.cases[0] == EditCase(
        case_id="zsre:eval/0",
        dataset="zsre",
        prompt="What university did {} attend?",
        subject="Watts Humphrey",
        target_new="University of Michigan",
        target_true="Illinois Institute of Technology",
        paraphrase_prompts=("What university did Watts Humphrey take part in?",),
        neighborhood=(
            NeighborhoodPrompt("nq question: who played desmond doss father in hacksaw ridge", "Hugo Weaving"),
        ),
        extra={
            "pred": "Trinity College",
            "cond": "Trinity College >> University of Michigan || What university did Watts Humphrey attend?",
        },
    )
    assert load.cases[1].target_true == "Lecanorales"
    assert load.cases[1].extra["answers"] == ["Lecanorales", "Lecanoromycetes"]
    assert [c.case_id for c in load.cases] == ["zsre:eval/0", "zsre:eval/1"]
    assert _errors(load, 2) == [("target_new", "empty")]
    assert _errors(load, 3)[0][0] == "subject"
    assert _errors(load, 4) == [("answers", "expected a non-empty list")]


def test_hardedit_form_keeps_perplexities_in_extra() -> None:
    load = load_cases(str(DATA / "HardEdit.json"))
    assert load.cases[0] == EditCase(
        case_id="hardedit:0",
        dataset="hardedit",
        prompt="{} was created by",
        subject="Apple A5",
        target_new="Google",
        target_true="Apple",
        extra={"rome_gpt2_ppl": 4312.7, "rome_gptj_ppl": 1520.1},
    )
    assert load.cases[1].prompt == "{} is a product of"
    assert _errors(load, 2) == [("target_true", "missing")]
    assert _errors(load, 3) == [("target_new", "empty")]
    as_hardcf = load_cases(str(DATA / "HardEdit.json"), dataset="hardcf")
    assert [c.case_id for c in as_hardcf.cases] == ["hardcf:hardedit/0", "hardcf:hardedit/1"]


def test_portability_form() -> None:
    load = load_cases(str(DATA / "portability.json"))
    case = load.cases[0]
    assert case.case_id == "portability:19456"
    assert case.paraphrase_prompts == ("Aleksandr Kaleri is a native speaker of",)
    assert case.neighborhood == (NeighborhoodPrompt("Vladimir Smirnov is a native speaker of", "Russian"),)
    assert case.portability == (
        PortabilityPrompt("Besides English, the language spoken by cosmonaut Aleksandr Kaleri is", "French", "Russian"),
    )
    assert case.extra == {"portable_target_new_alternatives": {"0": ["French", "français"]}}
    assert _errors(load, 1) == [("portable_prompts", "expected a list, got str")]


def test_template_uses_the_first_occurrence() -> None:
    assert template("Paris is the capital of France", "Paris") == "{} is the capital of France"
    assert template("{} is in", "anything") == "{} is in"


def test_limit_and_unknown_sources(tmp_path: Path) -> None:
    assert len(load_cases(str(DATA / "rome_counterfact.json"), limit=1).cases) == 1
    with pytest.raises(DatasetError, match="unknown data source"):
        load_cases("no-such-source")
    (tmp_path / "odd.json").write_text(json.dumps([{"question": "q", "answer": "a"}]))
    with pytest.raises(DatasetError, match="format not recognised"):
        load_cases(str(tmp_path / "odd.json"))
    (tmp_path / "empty.json").write_text("[]")
    assert load_cases(str(tmp_path / "empty.json")).cases == []
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(DatasetError, match="broken.json: cannot read JSON"):
        load_cases(str(tmp_path / "broken.json"))


def test_jsonl_and_folder_sources(tmp_path: Path) -> None:
    records = json.loads((DATA / "zsre_mend_eval.json").read_text())
    (tmp_path / "zsre_mend_eval.jsonl").write_text("\n".join(json.dumps(r) for r in records[:2]))
    (tmp_path / "HardEdit.json").write_text((DATA / "HardEdit.json").read_text())
    load = load_cases(str(tmp_path))
    assert [c.case_id for c in load.cases] == ["hardedit:0", "hardedit:1", "zsre:eval/0", "zsre:eval/1"]


def test_one_bad_record_among_many_never_stops_the_load(tmp_path: Path) -> None:
    good = {
        "case_id": 0,
        "prompt": "Paris is the capital of",
        "subject": "Paris",
        "target_new": "Italy",
        "ground_truth": "France",
        "rephrase_prompt": "Paris is in",
        "locality_prompt": "Lyon is in",
        "locality_ground_truth": "France",
    }
    records = [{**good, "case_id": i} for i in range(20_000)]
    records[777] = {**good, "case_id": 777, "target_new": 5}
    records[12_345] = {**good, "case_id": 12_345, "subject": "Rome"}
    (tmp_path / "cf.json").write_text(json.dumps(records))
    load = load_cases(str(tmp_path / "cf.json"))
    assert len(load.cases) == 19_998
    assert [(e.index, e.field) for e in load.errors] == [(777, "target_new"), (12_345, "subject")]
    assert load.errors[0] == CaseError(str(tmp_path / "cf.json"), 777, "target_new", "expected a string, got int")


def test_case_row_round_trip_matches_the_warehouse_schema() -> None:
    pa = pytest.importorskip("pyarrow")
    schemas = pytest.importorskip("editcollapse.warehouse.schemas")
    cases = load_cases(str(DATA / "rome_counterfact.json")).cases + load_cases(str(DATA / "portability.json")).cases
    schema = pa.schema([f for f in schemas.CASES if f.name not in ("run_id", "shard")])
    table = pa.Table.from_pylist([c.to_row() for c in cases], schema=schema)
    assert [EditCase.from_row(row) for row in table.to_pylist()] == cases


# --- the real files in ../shared/data ---------------------------------------------------------


@pytest.fixture
def data_root(shared_data: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("EDITCOLLAPSE_DATA", str(shared_data))
    monkeypatch.setenv("EDITCOLLAPSE_CACHE", str(tmp_path / "cache"))
    return shared_data


def test_counterfact_all_three_files_fast(data_root: Path) -> None:
    start = time.process_time()  # CPU time: the bound holds on a machine shared with other jobs
    load = load_cases("counterfact")
    seconds = time.process_time() - start
    assert seconds < 5.0, f"loading + validating CounterFact took {seconds:.2f} s of CPU"
    assert len(load.files) == 3 and load.errors == []
    ids = sorted(int(c.case_id.split(":")[1]) for c in load.cases)
    assert ids == list(range(21_919))
    raw = json.loads((data_root / "counterfact" / "counterfact-edit.json").read_text())[0]
    case = next(c for c in load.cases if c.case_id == f"counterfact:{raw['case_id']}")
    assert case == EditCase(
        case_id="counterfact:0",
        dataset="counterfact",
        prompt="The mother tongue of {} is",
        subject="Danielle Darrieux",
        target_new="English",
        target_true="French",
        paraphrase_prompts=("Where Danielle Darrieux is from, people speak the language of",),
        neighborhood=(NeighborhoodPrompt("Michel Rocard is a native speaker of", "French"),),
    )
    assert all(c.filled_prompt.count(c.subject) >= 1 for c in load.cases)
    assert load_cases(str(data_root / "counterfact")).cases == load.cases


def test_zsre_real_file(data_root: Path) -> None:
    load = load_cases("zsre-train-1k")
    assert len(load.cases) + len({e.index for e in load.errors}) == 1_000
    # 19 MEND train records have alt == answers[0]: flagged, not silently edited to the same answer
    assert len(load.cases) == 981 and {e.field for e in load.errors} == {"target_new"}
    raw = json.loads((data_root / "zsre" / "zsre_mend_train-1k.json").read_text())[0]
    case = load.cases[0]
    assert (
        case.case_id,
        case.prompt.replace("{}", case.subject),
        case.target_new,
        case.target_true,
        case.paraphrase_prompts,
        case.neighborhood,
    ) == (
        "zsre:train-1k/0",
        raw["src"],
        raw["alt"],
        raw["answers"][0],
        (raw["rephrase"],),
        (NeighborhoodPrompt(raw["loc"], raw["loc_ans"]),),
    )
    assert case.neighborhood[0].prompt.startswith("nq question: ")


def test_qaedit_real_file(data_root: Path) -> None:
    load = load_cases("qaedit")
    assert len(load.cases) == 1_000 and load.errors == []
    raw = json.loads((data_root / "qaedit" / "QAEdit_inter_1k.json").read_text())[0]
    case = load.cases[0]
    assert case.case_id == f"qaedit:{raw['source']}-{raw['id']}"
    assert (case.filled_prompt, case.target_new, case.target_true, case.paraphrase_prompts) == (
        raw["prompt"],
        raw["target"],
        None,
        (raw["rephrase"],),
    )
    assert case.neighborhood == tuple(NeighborhoodPrompt(x["loc"], x["loc_ans"]) for x in raw["locality"])
    assert case.extra == {"source": raw["source"]}
