"""rnnkit's version (pyproject.toml's), in the lowest layer so any module may show it."""

__version__ = "0.1.0"
