"""ROME and r-ROME: keys, target vector, context templates, the one-case editor and the batched engine."""
