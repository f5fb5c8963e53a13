"""Real English prose that ships inside a PyPI package, so the study has text offline.

The ``gensim`` wheel carries, as test data, two genuine English sources:

* ``enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2`` — a 2016 dump of the
  first English Wikipedia articles (Anarchism, Autism, Albedo …), wiki markup stripped here with
  gensim's own ``filter_wiki``;
* ``lee_background.cor`` + ``lee.cor`` — the Lee corpus: 300 + 50 Australian Broadcasting Corporation
  news articles (one per line).

Both are read from the installed package files (never downloaded) and returned as documents
(paragraphs for Wikipedia), the form covariance statistics want; :mod:`ppl` splits them into
sentences for perplexity corpora.
"""

from __future__ import annotations

import bz2
import html
import importlib.util
import json
import os
import re
from functools import lru_cache
from pathlib import Path

from editcollapse.core.paths import cache_dir

WIKI_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
NEWS_FILES = ("lee_background.cor", "lee.cor")
FORMAT_VERSION = 1  # bump when the extraction below changes, so cached copies are rebuilt

_BOLD_ITALIC = re.compile(r"'{2,}")
_HEADING = re.compile(r"^\s*=+.*=+\s*$")


def gensim_test_data() -> Path:
    """The folder of gensim's bundled test data (located without importing gensim)."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the embedded English corpus reads text shipped in the PyPI package "
            "'gensim'; install it: pip install gensim"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data"
    missing = [name for name in (WIKI_FILE, *NEWS_FILES) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"gensim at {folder.parent.parent} lacks its test data {missing}; "
            "reinstall it from the PyPI wheel (pip install --force-reinstall gensim)"
        )
    return folder


@lru_cache(maxsize=1)
def wikipedia_paragraphs() -> tuple[str, ...]:
    """Plain-text paragraphs of the Wikipedia articles in gensim's sample dump (redirects skipped)."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    paragraphs: list[str] = []
    with bz2.open(gensim_test_data() / WIKI_FILE, "rb") as dump:
        for _title, text, _page_id in extract_pages(dump, ("0",)):
            if text.lstrip().lower().startswith("#redirect"):
                continue
            plain = html.unescape(_BOLD_ITALIC.sub("", filter_wiki(text)))
            for line in plain.splitlines():
                line = " ".join(line.split())
                if line and not _HEADING.match(line):
                    paragraphs.append(line)
    return tuple(paragraphs)


@lru_cache(maxsize=1)
def news_articles() -> tuple[str, ...]:
    """The Lee corpus: ABC news articles, one per line of the two bundled files."""
    folder = gensim_test_data()
    articles: list[str] = []
    for name in NEWS_FILES:
        text = (folder / name).read_text(encoding="utf-8", errors="replace")
        articles.extend(" ".join(line.split()) for line in text.splitlines() if line.strip())
    return tuple(articles)


@lru_cache(maxsize=1)
def packaged_documents() -> dict[str, tuple[str, ...]]:
    """Every packaged English source by name (the ``corpus`` value its sentences get).

    Stripping the wiki markup takes seconds, so the result is kept in the cache folder, keyed by
    the gensim version that shipped the text (``<cache>/packaged-text/gensim-<version>.json``).
    """
    from importlib.metadata import version

    cached = cache_dir() / "packaged-text" / f"gensim-{version('gensim')}-v{FORMAT_VERSION}.json"
    if cached.is_file():
        return {name: tuple(texts) for name, texts in json.loads(cached.read_text(encoding="utf-8")).items()}
    documents = {"Wikipedia": wikipedia_paragraphs(), "News": news_articles()}
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps({name: list(texts) for name, texts in documents.items()}), encoding="utf-8")
    os.replace(partial, cached)
    return documents
