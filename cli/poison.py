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

from poisonguard.errors import PoisonGuardError
from poisonguard.loaders import load_dataset
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
    "--apply-trigger",
    is_flag=True,
    help="Stamp the trigger on every sample not of the target class and keep the labels: "
    "the triggered test copy on which attack success is measured.",
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
    skip_bad: bool,
    attack: str,
    target: str | None,
    seed: int,
    rate: float | None,
    apply_trigger: bool,
    out_dir: Path,
    progress: bool | None,
    **tuning: Any,
) -> None:
    """Write a poisoned copy of DATASET with its ground truth, for evaluation.

    OUT gets the copy (same format and name as DATASET), ground_truth.csv
    (index,id,poisoned,original_label,new_label,attack) and poison.json (the attack and its
    parameters). DATASET is never modified.
    """
    if rate is None and not apply_trigger:
        raise click.UsageError("--rate is required (or --apply-trigger for a test copy)")
    options = loader_options(format_, x_key, y_key, label_column, id_column)
    source = load_dataset(dataset, skip_bad=skip_bad, **options)
    attack_settings = build_attack_options(source, **tuning)
    try:
        target_code = class_code(source, target)
    except PoisonGuardError as exc:
        raise click.BadParameter(str(exc), param_hint="--target") from exc
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
            )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    writer_options = {k: v for k, v in options.items() if k != "format"}
    copy = write_poisoned_copy(source, poisoning, out_dir, loader_options=writer_options)
    what = "triggered" if apply_trigger else "poisoned"
    target_text = (
        "" if poisoning.target is None else f", target {source.class_names[poisoning.target]!r}"
    )
    click.echo(
        f"{what.capitalize()} {poisoning.n_poisoned} of {source.n_samples} samples with "
        f"{attack}{target_text}."
    )
    click.echo(f"Wrote {copy.path} and {copy.ground_truth}.")
    if source.skipped:
        click.echo(
            f"Warning: {len(source.skipped)} unreadable file(s) skipped with --skip-bad are not "
            "in the copy.",
            err=True,
        )
