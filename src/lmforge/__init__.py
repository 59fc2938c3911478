"""lmforge: from raw text to a working language model."""

__version__ = "0.1.0"
