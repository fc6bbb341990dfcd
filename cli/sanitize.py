"""``poisonguard sanitize``: a thin wrapper over :mod:`poisonguard.sanitize`."""

from __future__ import annotations

from pathlib import Path

import click
from poisonguard.cli.options import dataset_options, library_errors, loader_options

from poisonguard.loaders import load_dataset
from poisonguard.reviewer_decisions import read_reviewer_decisions
from poisonguard.sanitize import (
    ACTIONS,
    MIN_CONFIDENCE,
    plan_sanitize,
    read_scan_decisions,
    read_scan_triggers,
    write_sanitized,
)


@click.command()
@dataset_options
@click.option(
    "--scores",
    "scan_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="The folder a scan of DATASET wrote (its scores.csv is read).",
)
@click.option(
    "--action",
    type=click.Choice(ACTIONS),
    default="remove",
    show_default=True,
    help="remove: leave out every flagged sample; relabel: give samples judged mislabelled the "
    "predicted label and leave out the rest (backdoor samples keep their trigger if relabelled); "
    "repair (texts): as relabel, and flagged backdoor texts are kept with the trigger the scan "
    "named deleted and the label restored (two classes: the other one; more: the predicted "
    "label, if sure enough).",
)
@click.option(
    "--min-confidence",
    type=click.FloatRange(0, 1),
    default=MIN_CONFIDENCE,
    show_default=True,
    help="relabel, repair: least probability of the predicted label to use it; below it the "
    "sample is removed.",
)
@click.option(
    "--decisions",
    "decisions_file",
    type=click.Path(path_type=Path),
    default=None,
    help="A reviewer's decisions CSV (columns id,decision,note; decision keep or remove) "
    "applied over the scan's flags: keep keeps a flagged sample with its label, remove leaves "
    "out a sample the scan kept; samples not listed follow the scan.",
)
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output folder."
)
@library_errors
def sanitize(
    dataset: Path,
    format_: str | None,
    x_key: str | None,
    y_key: str | None,
    label_column: str | None,
    id_column: str | None,
    text_column: str | None,
    skip_bad: bool,
    scan_dir: Path,
    action: str,
    min_confidence: float,
    decisions_file: Path | None,
    out_dir: Path,
) -> None:
    """Write a cleaned copy of DATASET using a scan's decisions.

    OUT gets the copy (same format and name as DATASET) and quarantine.csv (every removed,
    relabelled or repaired sample with its score and reason, and who decided: the scan or, with
    --decisions, the reviewer, whose kept flags are listed too). DATASET is never modified.
    """
    options = loader_options(format_, x_key, y_key, label_column, id_column, text_column)
    # with --skip-bad (as the scan was run), unreadable images are left out of the copy too
    source = load_dataset(dataset, skip_bad=skip_bad, **options)
    if action == "repair" and source.kind != "text":
        raise click.UsageError(
            f"--action repair takes text triggers out of texts; {dataset} holds "
            f"{source.kind} samples: use remove or relabel"
        )
    decisions = read_scan_decisions(scan_dir, source)
    triggers = read_scan_triggers(scan_dir, source) if action == "repair" else None
    reviewer = None if decisions_file is None else read_reviewer_decisions(decisions_file, source)
    plan = plan_sanitize(
        source,
        decisions,
        action,
        min_confidence=min_confidence,
        reviewer=reviewer,
        triggers=triggers,
    )
    writer_options = {k: v for k, v in options.items() if k != "format"}
    written = write_sanitized(source, plan, out_dir, loader_options=writer_options)
    click.echo(
        f"Kept {plan.rows.size} of {source.n_samples} samples: {plan.n_removed} removed, "
        f"{plan.n_relabelled} relabelled"
        + (f", {plan.n_repaired} repaired." if action == "repair" else ".")
    )
    if reviewer is not None:
        click.echo(
            f"The reviewer decided {int(reviewer.decided.sum())} sample(s): {plan.n_kept} "
            f"flag(s) kept, {plan.n_reviewed - plan.n_kept} sample(s) removed by the reviewer."
        )
    click.echo(f"Wrote {written} and {Path(out_dir) / 'quarantine.csv'}.")
    if source.skipped:
        click.echo(
            f"Warning: {len(source.skipped)} unreadable file(s) skipped with --skip-bad are not "
            "in the copy.",
            err=True,
        )
