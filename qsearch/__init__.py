"""qsearch: find the smallest integer-only controllers that match full-precision returns."""

__version__ = "0.1.0"
