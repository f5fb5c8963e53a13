"""editcollapse: large-scale studies of how knowledge editing collapses language models."""

__version__ = "0.1.0"
