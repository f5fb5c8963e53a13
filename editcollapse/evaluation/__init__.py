"""How an edited model is measured: edit metrics, ME-PPL perplexity, generation, WILD evaluation."""
