"""MEND training as a stage: train a model's editor network, store it, measure it on held-out cases."""
