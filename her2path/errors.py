"""One exception family for every failure a user can cause.

Each error carries the file it concerns and the fix, so the CLI can print a
single line: ``her2path: error: <file>: <problem>. Fix: <fix>``.
"""
from __future__ import annotations

from pathlib import Path


class Her2PathError(Exception):
    """Base of all user-facing errors.

    Parameters
    ----------
    problem : str
        What is wrong, in words a user understands.
    path : str or Path, optional
        The file or folder concerned.
    fix : str, optional
        What the user should do about it.
    """

    def __init__(self, problem: str, path: str | Path | None = None, fix: str | None = None):
        self.problem = problem
        self.path = str(path) if path is not None else None
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The whole error as one line of text."""
        text = f"{self.path}: {self.problem}" if self.path else self.problem
        if self.fix:
            text += f". Fix: {self.fix}"
        return text.replace("\n", " ")


class InputError(Her2PathError):
    """An input file is missing, unreadable, corrupt or of the wrong kind."""


class MppError(InputError):
    """The physical pixel size (um/px) of an image is unknown or implausible."""


class NoTissueError(InputError):
    """A slide holds no tissue that could be analysed."""


class ConfigError(Her2PathError):
    """A configuration or guideline file is invalid."""
