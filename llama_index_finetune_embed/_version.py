"""The package version, in one place (so nothing imports the package ``__init__`` for it)."""

__version__ = "0.3.0"
