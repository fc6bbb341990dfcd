"""``poisonguard evaluate``: a thin wrapper over :func:`poisonguard.evaluate.evaluate`."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
from poisonguard.cli.options import (
    attack_options,
    build_attack_options,
    cache_options,
    dataset_options,
    library_errors,
    loader_options,
    progress_option,
    resolve_progress,
)

from poisonguard.errors import PoisonGuardError
from poisonguard.evaluate import Evaluation, evaluate
from poisonguard.loaders import load_dataset
from poisonguard.poisoned_copy import class_code
from poisonguard.report import write_report
from poisonguard.sanitize import ACTIONS


@click.command(name="evaluate")
@dataset_options
@attack_options
@click.option("--rate", type=float, required=True, help="Share of the training set to poison.")
@click.option(
    "--test",
    "test_path",
    type=click.Path(path_type=Path),
    default=None,
    help="A clean test set in the same format and classes (default: a stratified hold-out).",
)
@click.option(
    "--trusted",
    "trusted_path",
    type=click.Path(path_type=Path),
    default=None,
    help="A small clean dataset in the same format and classes, apart from the data and the "
    "test set, for the scan (as `poisonguard scan --trusted`).",
)
@click.option(
    "--holdout",
    type=float,
    default=0.2,
    show_default=True,
    help="Share held out as the test set when there is no --test.",
)
@click.option(
    "--action",
    type=click.Choice(ACTIONS),
    default="relabel",
    show_default=True,
    help="How the sanitized training set is made (see `poisonguard sanitize --help`).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Training epochs of every model (default: chosen from the dataset size).",
)
@click.option(
    "--models",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Models trained on each training set (seeds SEED, SEED+1, ...), their probabilities "
    "averaged: on a small set one model's attack success can move by 20 points with its seed.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Report folder (default reports/<dataset>-evaluate-<UTC timestamp>).",
)
@cache_options
@progress_option
@library_errors
def evaluate_command(
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
    rate: float,
    test_path: Path | None,
    trusted_path: Path | None,
    holdout: float,
    action: str,
    epochs: int | None,
    models: int,
    out_dir: Path | None,
    cache_dir: Path | None,
    no_cache: bool,
    progress: bool | None,
    **tuning: Any,
) -> None:
    """Poison DATASET, scan it, sanitize it, and train on clean, poisoned and sanitized data.

    Prints clean test accuracy and attack success for each training set and the scan's
    detection precision, recall, F1 and AUROC; the report folder gets the scan's report of the
    poisoned data with an evaluation section (report.json "evaluation", report.html).
    """
    options = loader_options(format_, x_key, y_key, label_column, id_column, text_column)
    source = load_dataset(dataset, skip_bad=skip_bad, **options)
    test = None if test_path is None else load_dataset(test_path, skip_bad=skip_bad, **options)
    trusted = (
        None if trusted_path is None else load_dataset(trusted_path, skip_bad=skip_bad, **options)
    )
    attack_settings = build_attack_options(source, **tuning)
    try:
        target_code = class_code(source, target)
    except PoisonGuardError as exc:
        raise click.BadParameter(str(exc), param_hint="--target") from exc
    try:
        result = evaluate(
            source,
            attack=attack,
            rate=rate,
            target=target_code,
            seed=seed,
            options=attack_settings,
            test=test,
            trusted=trusted,
            holdout_fraction=holdout,
            action=action,
            epochs=epochs,
            models=models,
            cache_dir=cache_dir,
            use_cache=not no_cache,
            progress=resolve_progress(progress),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if out_dir is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out_dir = Path("reports") / f"{source.name}-evaluate-{stamp}"
    files = write_report(result.scan, out_dir, seed=seed, evaluation=result.as_dict())
    click.echo(summary_table(result))
    click.echo(f"Report: {files.html} (with report.json and scores.csv)")


def summary_table(result: Evaluation) -> str:
    """The evaluation as a plain-text table."""
    target = "" if result.target is None else f" -> class {result.target}"
    detection = result.detection
    auroc = "–" if detection["auroc"] is None else f"{detection['auroc']:.4f}"
    repaired = f"{result.sanitized['repaired']} repaired, " if result.action == "repair" else ""
    lines = [
        f"Attack {result.attack}{target}: {result.n_poisoned} of {result.n_train} training "
        f"samples poisoned; test set {result.n_test} samples ({result.test_source}).",
        f"Detection: precision {detection['precision']:.4f}, recall {detection['recall']:.4f}, "
        f"F1 {detection['f1']:.4f}, AUROC {auroc}; sanitize --action {result.action}: "
        f"{result.sanitized['removed']} removed, {result.sanitized['relabelled']} relabelled, "
        f"{repaired}{result.sanitized['poisoned_left']} poisoned left.",
        "",
        f"{'training set':<14}{'samples':>9}{'clean accuracy':>17}{'attack success':>17}",
    ]
    for outcome in result.outcomes:
        success = "–" if outcome.attack_success is None else f"{outcome.attack_success:.2%}"
        lines.append(
            f"{outcome.training_set:<14}{outcome.n_train:>9}"
            f"{outcome.clean_accuracy:>17.2%}{success:>17}"
        )
    n_models = max(1, len(result.outcomes[0].per_seed)) if result.outcomes else 1
    if n_models > 1:
        last = result.seed + n_models - 1
        lines.append(
            f"Each row: the averaged probabilities of {n_models} models (seeds {result.seed}-"
            f"{last}); report.json has each seed's figures."
        )
    return "\n".join(lines)
