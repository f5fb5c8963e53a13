"""Downstream evaluation of edited models with lm-eval, and perplexity-vs-score correlation."""
