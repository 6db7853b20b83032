"""The version nnxform writes into the files it produces (kept in step with ``pyproject.toml``)."""

__version__ = "0.1.0"
