"""ME-PPL corpora: the released files, the ME-PPL-style builder, the embedded default corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from editcollapse.datasets import build_ppl_corpus, english_texts, load_ppl_corpus
from editcollapse.datasets.ppl import (
    EMBEDDED_MIX,
    ME_PPL_MIX,
    PplCorpus,
    cached_corpus,
    is_english_sentence,
    proportional_quotas,
    read_ppl_file,
    split_sentences,
)

DOCS = {
    "News": [
        "The council met on Monday. Mr. Smith said the new bridge will open in the spring of next year "
        "after a long delay caused by the floods. Short one. It was the first time that the mayor had "
        "spoken about the project in public since the vote was taken by the council in March."
    ]
    * 1
    + [
        f"Story {i} is about the people of the town and the long road that they have walked for "
        f"many years since the mill closed in {1900 + i}."
        for i in range(30)
    ],
    "Books": [
        f"In chapter {i} the old captain looked out over the sea and thought of all the ships he "
        f"had lost in the storms of his youth."
        for i in range(30)
    ],
}


def test_split_sentences_keeps_abbreviations() -> None:
    text = "Mr. Smith went to Washington. He met Dr. Jones at 5 p.m. on Friday! Was it late? Yes."
    assert split_sentences(text) == [
        "Mr. Smith went to Washington.",
        "He met Dr. Jones at 5 p.m. on Friday!",
        "Was it late?",
        "Yes.",
    ]


def test_english_filter() -> None:
    assert is_english_sentence("The river flows through the city and it is one of the longest in the country.")
    assert not is_english_sentence("The river flows through the city.")  # not more than 10 words
    assert not is_english_sentence("Le fleuve traverse la ville et il est l'un des plus longs du pays entier.")
    assert not is_english_sentence("Der Fluss fließt durch die Stadt und ist einer der längsten Flüsse im Land.")
    assert not is_english_sentence("See the page at https://example.org for all of the details that you want.")
    assert not is_english_sentence("{{Infobox | name = the city of the river and of the sea in the north }}")


def test_builder_quotas_seed_and_corpus_column() -> None:
    corpus = build_ppl_corpus(DOCS, {"News": 5, "Books": 3}, seed=7, name="mini")
    assert corpus.mix() == {"News": 5, "Books": 3}
    assert all(len(text.split()) > 10 for text in corpus.texts)
    assert corpus.to_records()[0].keys() == {"Corpus", "Text"}
    assert build_ppl_corpus(DOCS, {"News": 5, "Books": 3}, seed=7, name="mini") == corpus
    assert build_ppl_corpus(DOCS, {"News": 5, "Books": 3}, seed=8, name="mini").texts != corpus.texts
    with pytest.raises(ValueError, match="source 'Books' has 30 eligible sentences, quota is 31"):
        build_ppl_corpus(DOCS, {"Books": 31})
    with pytest.raises(KeyError, match="no documents for source 'Web'"):
        build_ppl_corpus(DOCS, {"Web": 1})


def test_proportional_quotas() -> None:
    assert proportional_quotas(ME_PPL_MIX, 10_000) == ME_PPL_MIX
    thousand = proportional_quotas(ME_PPL_MIX, 1_000)
    assert sum(thousand.values()) == 1_000 and thousand["OpenWebText"] == 500 and thousand["BookCorpus"] == 5
    fifty = proportional_quotas(ME_PPL_MIX, 50)
    assert sum(fifty.values()) == 50 and min(fifty.values()) >= 1


def test_released_me_ppl_files(shared_data: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDITCOLLAPSE_DATA", str(shared_data))
    monkeypatch.setenv("EDITCOLLAPSE_CACHE", str(tmp_path))
    cached_corpus.cache_clear()
    full, thousand, fifty = (load_ppl_corpus(n) for n in ("me-ppl-10k", "me-ppl-1k", "me-ppl-50"))
    assert (len(full.texts), len(thousand.texts), len(fifty.texts)) == (10_000, 1_000, 50)
    assert full.mix() == ME_PPL_MIX  # paper Table 5
    assert set(thousand.texts) <= set(full.texts) and set(fifty.texts) <= set(full.texts)
    raw = json.loads((shared_data / "me-ppl" / "ME-PPL_50.json").read_text())
    assert fifty.texts == [r["Text"] for r in raw] and fifty.sources == [r["Corpus"] for r in raw]
    assert english_texts("me-ppl-50") == fifty.texts
    cached_corpus.cache_clear()


def test_ppl_file_errors_name_the_record(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"Corpus": "C4", "Text": "fine text"}, {"Corpus": "C4", "Text": ""}]))
    with pytest.raises(ValueError, match=r"bad.json: record 1: field 'Text'"):
        read_ppl_file(bad)
    with pytest.raises(KeyError, match="unknown perplexity corpus"):
        load_ppl_corpus("me-ppl-7")


def test_embedded_corpus_is_reproducible_english() -> None:
    pytest.importorskip("gensim")
    corpus = load_ppl_corpus("embedded-50")
    assert isinstance(corpus, PplCorpus) and len(corpus.texts) == 50
    assert corpus.mix() == proportional_quotas(EMBEDDED_MIX, 50) == {"Wikipedia": 30, "News": 20}
    assert all(is_english_sentence(text) for text in corpus.texts)
    assert len(set(corpus.texts)) == 50
    cached_corpus.cache_clear()
    assert load_ppl_corpus("embedded-50") == corpus
    documents = english_texts("embedded")
    assert len(documents) > 10_000 and sum(len(d.split()) for d in documents) > 400_000


def test_packaged_text_cache_round_trip() -> None:
    pytest.importorskip("gensim")
    from editcollapse.datasets.packaged_text import packaged_documents

    built = packaged_documents()
    packaged_documents.cache_clear()
    assert packaged_documents() == built  # second read comes from the JSON copy in the cache folder
    assert set(built) == {"Wikipedia", "News"} and len(built["News"]) == 350
