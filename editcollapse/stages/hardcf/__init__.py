"""HardCF: the cases whose single edit collapsed at least one model."""
