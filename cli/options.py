"""Options shared by several commands, and the translation of library errors to exit codes."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from poisonguard.atomic import describe_os_error
from poisonguard.detectors import get_detectors
from poisonguard.errors import PoisonGuardError
from poisonguard.limits import DEFAULT_STAGED_BYTES, max_bytes_setting, parse_bytes
from poisonguard.loaders import FORMATS, load_plugins
from poisonguard.ondisk import BLOCK_ROWS

EXIT_FINDINGS = 3


class ByteSize(click.ParamType):
    """A size in bytes: ``68719476736``, ``64G`` or ``64GiB`` (powers of 1,024), ``64GB`` (of
    1,000), ``1e12``."""

    name = "bytes"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_bytes(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _with_max_bytes(command: Callable) -> Callable:
    """Run ``command`` with its ``--max-bytes`` value as the limit of every dataset it loads
    (:func:`poisonguard.limits.max_bytes_setting`); the command does not take the value."""

    @functools.wraps(command)
    def wrapper(*args: Any, max_bytes: int | None = None, **kwargs: Any) -> Any:
        with max_bytes_setting(max_bytes):
            return command(*args, **kwargs)

    return wrapper


def dataset_options(command: Callable) -> Callable:
    """Arguments and options that say how to read a dataset (``--max-bytes`` applies to every
    dataset the command loads)."""
    command = _with_max_bytes(command)
    load_plugins()  # --format offers the formats plug-ins add
    decorators = [
        click.argument("dataset", type=click.Path(path_type=Path)),
        click.option(
            "--format",
            "format_",
            type=click.Choice(sorted(FORMATS)),
            default=None,
            help="Dataset format; by default picked from the path (a folder of images or of "
            ".txt files, .h5/.hdf5, .npz, .csv, .tsv, .jsonl, .parquet).",
        ),
        click.option(
            "--x-key", default=None, help="HDF5/NPZ key of the samples (default x, images)."
        ),
        click.option(
            "--y-key", default=None, help="HDF5/NPZ key of the labels (default y, labels)."
        ),
        click.option(
            "--label-column",
            default=None,
            help="CSV, TSV, JSON Lines or Parquet label column (default label).",
        ),
        click.option(
            "--id-column",
            default=None,
            help="CSV, TSV, JSON Lines or Parquet column of sample ids (default id, if present).",
        ),
        click.option(
            "--text-column",
            default=None,
            help="Text column of a text dataset (default text; a CSV file with it holds text).",
        ),
        click.option(
            "--skip-bad",
            is_flag=True,
            help="Skip unreadable images and list them in the report instead of stopping.",
        ),
        click.option(
            "--max-bytes",
            type=ByteSize(),
            default=None,
            metavar="SIZE",
            help="Refuse a dataset that declares an array (or an image) larger than SIZE once "
            "loaded, before reading it (64G, 64GiB, 500MB, 1e12). Default: half the memory for "
            f"what is held in memory, {DEFAULT_STAGED_BYTES >> 30} GiB for samples staged on "
            "disk (--chunk-rows), PIL's decompression-bomb limit (89,478,485 pixels) for one "
            "image.",
        ),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def loader_options(
    format_: str | None,
    x_key: str | None,
    y_key: str | None,
    label_column: str | None,
    id_column: str | None,
    text_column: str | None = None,
) -> dict[str, str | None]:
    """The options :func:`poisonguard.loaders.load_dataset` and the writers take."""
    return dict(
        format=format_,
        x_key=x_key,
        y_key=y_key,
        label_column=label_column,
        id_column=id_column,
        text_column=text_column,
    )


def attack_options(command: Callable) -> Callable:
    """``--attack`` and the options that tune an attack (see ``poisonguard.poison``)."""
    from poisonguard.poison import ATTACKS

    decorators = [
        click.option(
            "--attack",
            type=click.Choice(list(ATTACKS)),
            required=True,
            help="The attack: "
            + "; ".join(f"{name}: {spec.summary}" for name, spec in ATTACKS.items()),
        ),
        click.option(
            "--target",
            default=None,
            help="Target class name of a backdoor, destination of flip-pair "
            "(default: drawn with the seed; none with --all-to-all).",
        ),
        click.option(
            "--seed", type=int, default=0, show_default=True, help="Seed of every choice."
        ),
        click.option("--patch-size", type=click.IntRange(min=1), default=3, show_default=True),
        click.option(
            "--patch-position",
            type=click.Choice(["bottom-right", "bottom-left", "top-right", "top-left", "random"]),
            default="bottom-right",
            show_default=True,
        ),
        click.option(
            "--patch-pattern",
            type=click.Choice(["white", "black", "checkerboard"]),
            default="white",
            show_default=True,
        ),
        click.option(
            "--alpha",
            "blend_alpha",
            type=float,
            default=0.15,
            show_default=True,
            help="Blend weight of the noise pattern (blend; adaptive-blend's training samples).",
        ),
        click.option(
            "--sig-delta",
            type=float,
            default=20.0,
            show_default=True,
            help="SIG amplitude, in 0..255 units.",
        ),
        click.option("--sig-frequency", type=int, default=6, show_default=True),
        click.option("--wanet-grid", type=int, default=4, show_default=True),
        click.option("--wanet-strength", type=float, default=0.5, show_default=True),
        click.option(
            "--columns",
            default=None,
            help="table-trigger: comma-separated column indices (default: drawn).",
        ),
        click.option(
            "--values",
            "trigger_values",
            default=None,
            help="table-trigger: comma-separated values, one per column.",
        ),
        click.option(
            "--source-class",
            default=None,
            help="flip-pair (targeted flip): the class whose samples are relabelled. With a "
            "backdoor that relabels (patch, blend, sig, wanet, adaptive-blend, table-trigger, "
            "rare-word, sentence): the only class that gets the trigger and the target label "
            "(source-specific, TaCT).",
        ),
        click.option(
            "--cover-rate",
            type=float,
            default=0.0,
            show_default=True,
            help="Share of all samples, from classes other than the target and the source, "
            "that get the trigger but keep their label (cover samples: TaCT with "
            "--source-class, conservatism samples of adaptive-blend, noise-mode samples of "
            "wanet: the warp plus noise of their own; the paper uses twice the poison rate).",
        ),
        click.option(
            "--all-to-all",
            is_flag=True,
            help="A backdoor that relabels: poisoned samples are drawn from every class and a "
            "sample of class c gets the label (c + 1) mod K (no --target).",
        ),
        click.option(
            "--adaptive-grid",
            type=int,
            default=4,
            show_default=True,
            help="adaptive-blend: the pattern is cut into G x G pieces.",
        ),
        click.option(
            "--adaptive-pieces",
            type=int,
            default=None,
            help="adaptive-blend: pieces each training sample carries, chosen per sample "
            "(default: half of them).",
        ),
        click.option(
            "--test-alpha",
            type=float,
            default=0.2,
            show_default=True,
            help="adaptive-blend: blend weight of the whole pattern in the test copy "
            "(--apply-trigger, evaluate).",
        ),
        click.option(
            "--clean-label-trigger",
            type=click.Choice(["patch", "blend", "sig", "wanet"]),
            default="patch",
            show_default=True,
            help="The trigger clean-label stamps.",
        ),
        click.option(
            "--clean-label-epsilon",
            type=click.FloatRange(0, 255),
            default=16.0,
            show_default=True,
            help="clean-label: largest adversarial change per pixel, in 0..255 units (0: none).",
        ),
        click.option(
            "--trigger-words",
            default="cf,mn,bb,tq",
            show_default=True,
            help="rare-word: comma-separated trigger words; each insertion draws one.",
        ),
        click.option(
            "--trigger-count",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="rare-word: trigger words inserted per text.",
        ),
        click.option(
            "--trigger-position",
            type=click.Choice(["random", "start", "end"]),
            default="random",
            show_default=True,
            help="rare-word, sentence: where the trigger goes in a text (random: between two "
            "words, or at a sentence boundary, drawn per text).",
        ),
        click.option(
            "--trigger-sentence",
            default="I watched this 3D movie last weekend.",
            show_default=True,
            help="sentence: the inserted sentence.",
        ),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def build_attack_options(dataset, **values: Any):
    """An ``AttackOptions`` from the CLI values (class names resolved against ``dataset``)."""
    from poisonguard.poison import AttackOptions
    from poisonguard.poisoned_copy import class_code

    def numbers(text: str | None, kind: type) -> tuple | None:
        if text is None:
            return None
        try:
            return tuple(kind(part) for part in text.split(","))
        except ValueError as exc:
            raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers") from exc

    try:
        return AttackOptions(
            patch_size=values["patch_size"],
            patch_position=values["patch_position"],
            patch_pattern=values["patch_pattern"],
            blend_alpha=values["blend_alpha"],
            sig_delta=values["sig_delta"],
            sig_frequency=values["sig_frequency"],
            wanet_grid=values["wanet_grid"],
            wanet_strength=values["wanet_strength"],
            table_columns=numbers(values["columns"], int),
            table_values=numbers(values["trigger_values"], float),
            source_class=class_code(dataset, values["source_class"]),
            clean_label_trigger=values["clean_label_trigger"],
            clean_label_epsilon=values["clean_label_epsilon"],
            all_to_all=values["all_to_all"],
            cover_rate=values["cover_rate"],
            adaptive_grid=values["adaptive_grid"],
            adaptive_pieces=values["adaptive_pieces"],
            test_alpha=values["test_alpha"],
            trigger_words=tuple(word.strip() for word in values["trigger_words"].split(",")),
            trigger_count=values["trigger_count"],
            trigger_position=values["trigger_position"],
            trigger_sentence=values["trigger_sentence"],
        )
    except (ValueError, PoisonGuardError) as exc:
        raise click.UsageError(str(exc)) from exc


def cache_options(command: Callable) -> Callable:
    """``--cache-dir`` and ``--no-cache``: where the embedding cache lives, or not to use it."""
    decorators = [
        click.option(
            "--cache-dir",
            type=click.Path(path_type=Path),
            default=None,
            help="Embedding cache folder (default $POISONGUARD_CACHE_DIR or ~/.cache/poisonguard).",
        ),
        click.option(
            "--no-cache", is_flag=True, help="Neither read nor write the embedding cache."
        ),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def dask_option(command: Callable) -> Callable:
    """``--dask ADDRESS``: run the embedding inference and per-class detectors on a Dask cluster."""
    return click.option(
        "--dask",
        "dask",
        metavar="ADDRESS",
        default=None,
        help="Run embedding inference and the per-class detectors as tasks on the Dask "
        "scheduler at ADDRESS (tcp://host:8786), or on a new cluster on this machine with "
        "'local'. Same seed, same scores as without it.",
    )(command)


def chunk_rows_option(command: Callable) -> Callable:
    """``--chunk-rows N``: the out-of-core scan."""
    return click.option(
        "--chunk-rows",
        type=click.IntRange(min=BLOCK_ROWS),
        callback=_check_chunk_rows,
        default=None,
        metavar="N",
        help="Out of core: stage the samples (HDF5, image folders) and keep the embedding's "
        f"features on disk, read N rows (a multiple of {BLOCK_ROWS}) or one class at a time "
        "instead of held in memory. Same scores as in memory. Needs the cache.",
    )(command)


def _check_chunk_rows(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and value % BLOCK_ROWS:
        raise click.BadParameter(f"must be a multiple of {BLOCK_ROWS}, got {value}")
    return value


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
    """Turn a :class:`PoisonGuardError`, or an :class:`OSError` from the system (a full disk, an
    unwritable or read-only output, cache or staging folder), into a one-line message
    (``Error: <path>: <problem>``) and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PoisonGuardError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:
            raise click.ClickException(describe_os_error(exc)) from exc

    return wrapper


def configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="poisonguard: %(levelname)s: %(message)s", force=True)
