"""The package version, kept apart from ``her2path/__init__.py`` so that modules below the
CLI can name it without importing the package top (pyproject.toml reads it from here)."""
__version__ = "0.1.0"
SOFTWARE = f"her2path {__version__}"
