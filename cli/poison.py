"""``poisonguard poison``: a thin wrapper over :mod:`poisonguard.poisoned_copy`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from poisonguard.cli.options import (
    attack_options,
    build_attack_options,
    dataset_options,
    library_errors,
    loader_options,
    progress_option,
    resolve_progress,
)

from poisonguard.dataset import Dataset
from poisonguard.errors import PoisonGuardError
from poisonguard.loaders import load_dataset
from poisonguard.poison import Poisoning
from poisonguard.poisoned_copy import (
    class_code,
    poison_dataset,
    trigger_dataset,
    write_poisoned_copy,
)


@click.command()
@dataset_options
@attack_options
@click.option(
    "--rate",
    type=float,
    default=None,
    help="Share of all samples to poison, in (0, 1) (required unless --apply-trigger).",
)
@click.option(
    "--also",
    "also",
    multiple=True,
    metavar="ATTACK:TARGET:RATE",
    help="Plant one more backdoor (repeatable), e.g. blend:3:0.05: its own trigger, target "
    "class and rate, on samples the earlier backdoors left untouched; the tuning options "
    "apply to every backdoor, the k-th --also uses seed + k.",
)
@click.option(
    "--apply-trigger",
    is_flag=True,
    help="Stamp the trigger on every sample not of the target class (all-to-all: every "
    "sample) and keep the labels: the triggered test copy on which attack success is measured.",
)
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output folder."
)
@progress_option
@library_errors
def poison(
    dataset: Path,
    format_: str | None,
    x_key: str | None,
    y_key: str | None,
    label_column: str | None,
    id_column: str | None,
    text_column: str | None,
    skip_bad: bool,
    attack: str,
    target: str | None,
    seed: int,
    rate: float | None,
    also: tuple[str, ...],
    apply_trigger: bool,
    out_dir: Path,
    progress: bool | None,
    **tuning: Any,
) -> None:
    """Write a poisoned copy of DATASET with its ground truth, for evaluation.

    OUT gets the copy (same format and name as DATASET), ground_truth.csv
    (index,id,poisoned,original_label,new_label,attack,role; role is payload, cover or clean)
    and poison.json (the attack and its parameters). DATASET is never modified.
    """
    if rate is None and not apply_trigger:
        raise click.UsageError("--rate is required (or --apply-trigger for a test copy)")
    if also and apply_trigger:
        raise click.UsageError(
            "--also plants more backdoors in a training copy; make each backdoor's test copy "
            "with its own --apply-trigger run (its seed is in poison.json)"
        )
    options = loader_options(format_, x_key, y_key, label_column, id_column, text_column)
    source = load_dataset(dataset, skip_bad=skip_bad, **options)
    attack_settings = build_attack_options(source, **tuning)
    try:
        target_code = class_code(source, target)
    except PoisonGuardError as exc:
        raise click.BadParameter(str(exc), param_hint="--target") from exc
    extra = [_parse_also(text, source) for text in also]
    try:
        if apply_trigger:
            poisoning = trigger_dataset(
                source, attack=attack, target=target_code, seed=seed, options=attack_settings
            )
        else:
            poisoning = poison_dataset(
                source,
                attack=attack,
                rate=rate,
                target=target_code,
                seed=seed,
                options=attack_settings,
                progress=resolve_progress(progress),
                also=extra,
            )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    writer_options = {k: v for k, v in options.items() if k != "format"}
    copy = write_poisoned_copy(source, poisoning, out_dir, loader_options=writer_options)
    if apply_trigger:
        click.echo(
            f"Triggered {poisoning.n_poisoned} of {source.n_samples} samples with "
            f"{attack}{_target_text(poisoning, source)}."
        )
    else:
        parts = "; ".join(
            f"{part.n_poisoned} with {part.attack}{_target_text(part, source)}"
            + (f" (and {part.n_cover} cover samples)" if part.n_cover else "")
            for part in poisoning.parts or (poisoning,)
        )
        click.echo(f"Poisoned {poisoning.n_poisoned} of {source.n_samples} samples: {parts}.")
    click.echo(f"Wrote {copy.path} and {copy.ground_truth}.")
    if source.skipped:
        click.echo(
            f"Warning: {len(source.skipped)} unreadable file(s) skipped with --skip-bad are not "
            "in the copy.",
            err=True,
        )


def _parse_also(text: str, source: Dataset) -> tuple[str, int, float]:
    """``ATTACK:TARGET:RATE`` (the target is a class name, which may itself hold colons)."""
    attack, _, rest = text.partition(":")
    target, _, rate_text = rest.rpartition(":")
    if not attack or not target or not rate_text:
        raise click.BadParameter(
            f"{text!r} is not ATTACK:TARGET:RATE (e.g. blend:3:0.05)", param_hint="--also"
        )
    try:
        rate = float(rate_text)
        code = class_code(source, target)
    except (ValueError, PoisonGuardError) as exc:
        message = str(exc) if isinstance(exc, PoisonGuardError) else f"rate {rate_text!r}"
        raise click.BadParameter(f"{text!r}: {message}", param_hint="--also") from exc
    return attack, code, rate


def _target_text(poisoning: Poisoning, source: Dataset) -> str:
    if poisoning.options.all_to_all:
        return " (all-to-all: class c to c + 1)"
    if poisoning.target is None:
        return ""
    text = f", target {source.class_names[poisoning.target]!r}"
    if poisoning.options.source_class is not None and poisoning.attack != "flip-pair":
        text += f" from source {source.class_names[poisoning.options.source_class]!r} only"
    return text
