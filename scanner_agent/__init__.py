"""The scanner agent of the e-bike archive-imaging system (runs on each counter PC)."""

__version__ = "0.1.0"
