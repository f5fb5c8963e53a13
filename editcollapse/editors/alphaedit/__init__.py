"""AlphaEdit: MEMIT's multi-layer update projected onto the null space of the preserved keys."""
