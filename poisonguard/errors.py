"""Exceptions raised by the library.

Every error a user can cause (a bad dataset, a bad model file, a bad setting) is a
:class:`PoisonGuardError`. The command line turns these into a one-line message and exit code 1;
anything else is a bug.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PoisonGuardError", "DatasetError", "ModelFileError", "OutputError"]


class PoisonGuardError(Exception):
    """Base class of the errors a user can cause."""


class DatasetError(PoisonGuardError):
    """A dataset could not be read or is not usable; the message names the file and the problem."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class ModelFileError(PoisonGuardError):
    """A user-supplied model file could not be used."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class OutputError(PoisonGuardError):
    """An output location cannot be written safely."""
