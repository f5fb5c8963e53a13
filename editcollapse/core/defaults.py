"""Defaults every layer shares, named once (the collapse threshold and perplexity corpus are in
:mod:`editcollapse.core.collapse`)."""

from __future__ import annotations

EMBEDDED_MODEL = "smollm2-135m"  # the default model of every stage: works offline, ships with the package
