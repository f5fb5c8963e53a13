"""The single-edit sweep: plan (spec, shards), engine (edit → measure → restore), summary, HardCF."""
