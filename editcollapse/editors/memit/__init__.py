"""MEMIT: a batch of facts written into the MLPs of several layers at once."""
