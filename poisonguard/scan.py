"""The scan pipeline: load -> embed -> detect -> decide.

:func:`scan_path` is what ``poisonguard scan`` runs; :func:`scan_dataset` starts from a loaded
:class:`~poisonguard.dataset.Dataset`. Both return a :class:`~poisonguard.results.ScanResult`
for :func:`poisonguard.report.write_report`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poisonguard.dataset import Dataset
from poisonguard.decision import benjamini_hochberg, class_pvalues, suspicion_from_pvalues
from poisonguard.detectors import get_detectors
from poisonguard.embed import EmbedSettings, embed_dataset
from poisonguard.results import ClassFinding, ScanResult

__all__ = ["ScanSettings", "scan_dataset", "scan_path"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanSettings:
    """Everything that changes a scan's result (recorded in the report).

    Parameters
    ----------
    detectors : tuple of str or None
        Detector names; ``None`` runs every registered detector.
    seed : int
        Seeds every random choice; the same seed gives the same report.
    fdr : float
        False discovery rate of the flagging rule (see :mod:`poisonguard.decision`).
    min_class_size : int
        Classes with fewer samples are not scored (a warning says so).
    epochs, batch_size, model_file
        Passed to :class:`~poisonguard.embed.EmbedSettings`.
    """

    detectors: tuple[str, ...] | None = None
    seed: int = 0
    fdr: float = 0.01
    min_class_size: int = 10
    epochs: int | None = None
    batch_size: int = 128
    model_file: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["model_file"] = None if self.model_file is None else str(self.model_file)
        values["detectors"] = [d.name for d in get_detectors(self.detectors)]
        return values


def scan_path(
    path: str | Path,
    settings: ScanSettings,
    *,
    format: str | None = None,
    x_key: str | None = None,
    y_key: str | None = None,
    label_column: str | None = None,
    skip_bad: bool = False,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
) -> ScanResult:
    """Load the dataset at ``path`` and scan it (see :func:`scan_dataset`)."""
    get_detectors(settings.detectors)  # reject an unknown detector before the slow steps
    start = time.perf_counter()
    from poisonguard.loaders import load_dataset

    dataset = load_dataset(
        path,
        format=format,
        x_key=x_key,
        y_key=y_key,
        label_column=label_column,
        skip_bad=skip_bad,
    )
    timings = {"load": time.perf_counter() - start}
    return scan_dataset(
        dataset,
        settings,
        cache_dir=cache_dir,
        use_cache=use_cache,
        progress=progress,
        timings=timings,
    )


def scan_dataset(
    dataset: Dataset,
    settings: ScanSettings,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
    timings: dict[str, float] | None = None,
) -> ScanResult:
    """Embed ``dataset``, run the detectors and flag suspicious samples."""
    detectors = get_detectors(settings.detectors)
    timings = dict(timings or {})
    warnings_: list[str] = []

    start = time.perf_counter()
    embedding = embed_dataset(
        dataset,
        EmbedSettings(
            seed=settings.seed,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            model_file=settings.model_file,
        ),
        cache_dir=cache_dir,
        use_cache=use_cache,
        progress=progress,
    )
    timings["embed"] = time.perf_counter() - start

    counts = dataset.class_counts()
    for code in np.flatnonzero(counts < settings.min_class_size):
        warnings_.append(
            f"class {dataset.class_names[code]!r} has {counts[code]} samples, fewer than "
            f"{settings.min_class_size}: too small for the detectors, not scored"
        )
        logger.warning(warnings_[-1])

    detector_scores: dict[str, np.ndarray] = {}
    pvalues = []
    for detector in detectors:
        start = time.perf_counter()
        scores = detector.run(
            embedding, dataset.labels, min_class_size=settings.min_class_size, seed=settings.seed
        )
        detector_scores[detector.name] = scores
        pvalues.append(
            class_pvalues(
                scores, dataset.labels, df=detector.null_df, min_class_size=settings.min_class_size
            )
        )
        timings[f"detector:{detector.name}"] = time.perf_counter() - start

    start = time.perf_counter()
    # Bonferroni across detectors: a sample is as suspicious as its strongest detector, corrected
    # for having looked several times.
    combined = np.minimum(1.0, len(pvalues) * np.min(np.vstack(pvalues), axis=0))
    flagged, cutoff = benjamini_hochberg(combined, fdr=settings.fdr)
    score = suspicion_from_pvalues(combined)
    threshold = (
        float(suspicion_from_pvalues(np.array([cutoff]))[0])
        if flagged.any()
        else float(suspicion_from_pvalues(np.array([settings.fdr / dataset.n_samples]))[0])
    )
    findings = _class_findings(dataset, flagged, counts, settings.min_class_size)
    timings["decide"] = time.perf_counter() - start

    return ScanResult(
        dataset=dataset,
        embedding=embedding,
        detector_scores=detector_scores,
        score=score,
        flagged=flagged,
        threshold=threshold,
        class_findings=findings,
        settings=settings.as_dict(),
        timings=timings,
        warnings=warnings_,
    )


def _class_findings(
    dataset: Dataset, flagged: np.ndarray, counts: np.ndarray, min_class_size: int
) -> list[ClassFinding]:
    findings = []
    flagged_counts = np.bincount(dataset.labels[flagged], minlength=dataset.n_classes)
    for code, name in enumerate(dataset.class_names):
        count, hits = int(counts[code]), int(flagged_counts[code])
        if count < min_class_size:
            verdict, reason = "skipped", f"only {count} samples; fewer than {min_class_size}"
        elif hits:
            verdict = "suspicious"
            reason = (
                f"{hits} of {count} samples ({hits / count:.1%}) stand out from the rest of the "
                "class beyond what clean data explains"
            )
        else:
            verdict, reason = "clean", "no sample stands out beyond what clean data explains"
        findings.append(ClassFinding(code, name, count, hits, verdict, reason))
    return findings
