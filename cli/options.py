"""Options shared by several commands, and the translation of library errors to exit codes."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from poisonguard.detectors import get_detectors
from poisonguard.errors import PoisonGuardError
from poisonguard.loaders import FORMATS

EXIT_FINDINGS = 3


def dataset_options(command: Callable) -> Callable:
    """Arguments and options that say how to read a dataset."""
    decorators = [
        click.argument("dataset", type=click.Path(path_type=Path)),
        click.option(
            "--format",
            "format_",
            type=click.Choice(sorted(FORMATS)),
            default=None,
            help="Dataset format; by default picked from the path (folder, .h5/.hdf5, .npz, .csv).",
        ),
        click.option(
            "--x-key", default=None, help="HDF5/NPZ key of the samples (default x, images)."
        ),
        click.option(
            "--y-key", default=None, help="HDF5/NPZ key of the labels (default y, labels)."
        ),
        click.option("--label-column", default=None, help="CSV label column (default label)."),
        click.option(
            "--id-column", default=None, help="CSV column of sample ids (default id, if present)."
        ),
        click.option(
            "--skip-bad",
            is_flag=True,
            help="Skip unreadable images and list them in the report instead of stopping.",
        ),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def progress_option(command: Callable) -> Callable:
    return click.option(
        "--progress/--no-progress",
        default=None,
        help="Show progress bars (default: when stderr is a terminal).",
    )(command)


def resolve_progress(flag: bool | None) -> bool:
    return sys.stderr.isatty() if flag is None else flag


def parse_detectors(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, ...] | None:
    """Click callback: validate ``--detectors a,b`` (usage error, exit 2, for unknown names)."""
    if value is None or value == "all":
        return None
    try:
        return tuple(d.name for d in get_detectors(value, trusted=True))
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


def library_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a :class:`PoisonGuardError` into a one-line message and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PoisonGuardError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="poisonguard: %(levelname)s: %(message)s", force=True)
