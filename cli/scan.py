"""``poisonguard scan``: a thin wrapper over :func:`poisonguard.scan.scan_path`."""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

import click
from poisonguard.cli.options import (
    EXIT_FINDINGS,
    cache_options,
    chunk_rows_option,
    dask_option,
    dataset_options,
    library_errors,
    parse_detectors,
    progress_option,
    resolve_progress,
)

from poisonguard.detectors import DETECTORS
from poisonguard.embed import default_cache_dir
from poisonguard.errors import DatasetError
from poisonguard.loaders import is_text_dataset
from poisonguard.ondisk import staging_area
from poisonguard.report import write_report
from poisonguard.report.json_report import scan_label_ambiguity
from poisonguard.results import ScanResult
from poisonguard.scan import ScanSettings, scan_path


@click.command()
@dataset_options
@click.option(
    "--model",
    "model_file",
    type=click.Path(path_type=Path),
    default=None,
    help="TorchScript feature extractor to use instead of training a model on the data.",
)
@click.option(
    "--detectors",
    callback=parse_detectors,
    default=None,
    help="Comma-separated detector names (default: all).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice.")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Training epochs of the embedding model (default: chosen from the dataset size).",
)
@click.option(
    "--reduce",
    type=click.Choice(["pca", "ica", "umap"]),
    default="pca",
    show_default=True,
    help="Reduction before activation clustering (umap is much slower).",
)
@click.option(
    "--trusted",
    type=click.Path(path_type=Path),
    default=None,
    help=(
        "A small clean dataset in the same format and classes; enables trusted-influence, and "
        "on texts lets the label-noise rule measure the corpus's own disagreement."
    ),
)
@click.option(
    "--min-class-size",
    type=click.IntRange(min=2),
    default=10,
    show_default=True,
    help="Classes with fewer samples are not scored.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Report folder (default reports/<dataset>-<UTC timestamp>).",
)
@cache_options
@dask_option
@chunk_rows_option
@click.option("--json", "as_json", is_flag=True, help="Print report.json instead of the summary.")
@click.option(
    "--fail-on-findings",
    is_flag=True,
    help=f"Exit with code {EXIT_FINDINGS} if any sample is flagged.",
)
@progress_option
@library_errors
def scan(
    dataset: Path,
    format_: str | None,
    x_key: str | None,
    y_key: str | None,
    label_column: str | None,
    id_column: str | None,
    text_column: str | None,
    skip_bad: bool,
    model_file: Path | None,
    detectors: tuple[str, ...] | None,
    seed: int,
    epochs: int | None,
    reduce: str,
    trusted: Path | None,
    min_class_size: int,
    out_dir: Path | None,
    cache_dir: Path | None,
    no_cache: bool,
    dask: str | None,
    chunk_rows: int | None,
    as_json: bool,
    fail_on_findings: bool,
    progress: bool | None,
) -> None:
    """Scan DATASET for poisoned samples and write a report.

    DATASET is an image folder (one sub-folder per class), an HDF5 or NPZ file with arrays x and
    y, a CSV table with a label column, or a text dataset (a CSV file with a text column, TSV,
    JSON Lines, Parquet, a folder of .txt files; a small text classifier is trained on it). The
    report folder gets scores.csv, report.json and report.html.
    """
    if model_file is not None and is_text_dataset(dataset, format=format_, text_column=text_column):
        raise DatasetError(
            dataset,
            "is a text dataset: a TorchScript extractor (--model) takes image or table samples; "
            "leave --model out to train the default text model",
        )
    if detectors and trusted is None:
        needing = [d for d in detectors if DETECTORS[d].needs_trusted]
        if needing:
            raise click.UsageError(f"detector(s) {', '.join(needing)} need --trusted")
    if chunk_rows is not None and no_cache:
        raise click.UsageError(
            "--chunk-rows keeps the features in the embedding cache: drop --no-cache"
        )
    settings = ScanSettings(
        detectors=detectors,
        seed=seed,
        reduce=reduce,
        trusted=trusted,
        min_class_size=min_class_size,
        epochs=epochs,
        model_file=model_file,
    )
    with ExitStack() as stack:
        staging = None
        if chunk_rows is not None:  # samples staged beside the cache; the thumbnails read them
            staging = stack.enter_context(
                staging_area(cache_dir or default_cache_dir(), chunk_rows)
            )
        result = scan_path(
            dataset,
            settings,
            format=format_,
            x_key=x_key,
            y_key=y_key,
            label_column=label_column,
            id_column=id_column,
            text_column=text_column,
            skip_bad=skip_bad,
            cache_dir=cache_dir,
            use_cache=not no_cache,
            progress=resolve_progress(progress),
            dask=dask,
            chunk_rows=chunk_rows,
            staging=staging,
        )
        if out_dir is None:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            out_dir = Path("reports") / f"{result.dataset.name}-{stamp}"
        files = write_report(result, out_dir, seed=seed)
    if as_json:
        click.echo(files.json.read_text(encoding="utf-8"))  # exactly the file, built once
    else:
        click.echo(_summary(result, files.html))
    if fail_on_findings and result.n_flagged:
        raise SystemExit(EXIT_FINDINGS)


def _summary(result: ScanResult, html: Path) -> str:
    data, emb = result.dataset, result.embedding
    lines = [
        f"Scanned {data.path} ({data.format}, {data.n_samples} samples, {data.n_classes} classes).",
    ]
    if emb.from_cache:
        lines.append(f"Embedding: reused from cache {emb.cache_path}.")
    else:
        recipe = emb.model.get("recipe", {})
        name = emb.model.get("architecture") or f"user model + {emb.model.get('head')}"
        lines.append(
            f"Embedding: trained {name} for {recipe.get('epochs')} epochs "
            f"(train accuracy {emb.train_accuracy:.1%})."
        )
    share = result.n_flagged / max(1, data.n_samples)
    lines.append(f"Flagged {result.n_flagged} of {data.n_samples} samples ({share:.1%}).")
    called = [f for f in result.class_findings if f.verdict in ("backdoor-target", "noisy-labels")]
    if result.attack_kinds:
        lines.append(f"Suspected attack: {' and '.join(result.attack_kinds)}.")
    for finding in called:
        lines.append(f"  class {finding.name} ({finding.verdict}): {finding.reason}")
    skipped = " and ".join(rule.summary for rule in result.rules_off)
    if result.rules_off and not result.n_flagged:
        lines.append(f"No samples flagged — but {skipped}.")
    elif result.rules_off:
        lines.append(f"Not every rule ran: {skipped}.")
    elif not result.attack_kinds:
        lines.append(
            "No attack found: no class holds a backdoor-like group and the labels show no noise "
            "pattern."
        )
    ambiguity = scan_label_ambiguity(result)
    if ambiguity is not None and ambiguity["predicted_by"] == "out-of-sample":
        lines.append(f"Labels: {ambiguity['statement']}")
    for warning in result.warnings:
        lines.append(f"Warning: {warning}")
    lines.append(f"Report: {html} (with report.json and scores.csv)")
    return "\n".join(lines)
