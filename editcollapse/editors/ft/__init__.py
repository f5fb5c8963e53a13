"""FT and FT-L∞: fine-tuning baselines as ROME defines them."""
