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
from poisonguard.decision import Decision, class_pvalues, combine_pvalues, decide
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
    tail_p : float
        p-value below which a sample is in its class's far tail (see :mod:`poisonguard.decision`).
    class_z : float
        Robust z-score of a class's tail share, against the other classes, above which the class
        is called suspicious.
    min_class_size : int
        Classes with fewer samples are not scored (a warning says so).
    epochs, batch_size, model_file
        Passed to :class:`~poisonguard.embed.EmbedSettings`.
    """

    detectors: tuple[str, ...] | None = None
    seed: int = 0
    tail_p: float = 1e-4
    class_z: float = 3.0
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
    id_column: str | None = None,
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
        id_column=id_column,
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
    scored = counts >= max(2, settings.min_class_size)
    for code in np.flatnonzero(~scored):
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
    decision = decide(
        combine_pvalues(pvalues),
        dataset.labels,
        scored,
        tail_p=settings.tail_p,
        class_z=settings.class_z,
    )
    if decision.rule == "unavailable":
        warnings_.append(
            "fewer than 3 classes could be scored, so no class can be compared with the others "
            "and nothing was flagged; the per-sample scores are in scores.csv"
        )
    findings = _class_findings(dataset, decision, counts, scored, settings)
    timings["decide"] = time.perf_counter() - start

    return ScanResult(
        dataset=dataset,
        embedding=embedding,
        detector_scores=detector_scores,
        score=decision.score,
        flagged=decision.flagged,
        threshold=decision.threshold,
        class_findings=findings,
        settings=settings.as_dict(),
        timings=timings,
        warnings=warnings_,
    )


def _class_findings(
    dataset: Dataset,
    decision: Decision,
    counts: np.ndarray,
    scored: np.ndarray,
    settings: ScanSettings,
) -> list[ClassFinding]:
    findings = []
    flagged_counts = np.bincount(dataset.labels[decision.flagged], minlength=dataset.n_classes)
    for code, name in enumerate(dataset.class_names):
        count, hits = int(counts[code]), int(flagged_counts[code])
        share, z = decision.tail_share[code], decision.class_z[code]
        tail = f"{share:.1%} of the class lies in the far tail (p < {settings.tail_p:g})"
        if not scored[code]:
            verdict = "skipped"
            reason = f"only {count} samples; fewer than {settings.min_class_size}"
        elif decision.rule == "unavailable":
            verdict = "unassessed"
            reason = (
                f"{tail}; fewer than 3 classes were scored, so there is nothing to compare with"
            )
        elif code in decision.suspicious_classes:
            typical = np.median(decision.tail_share[scored])
            verdict = "suspicious"
            reason = f"{tail}, against a typical {typical:.1%} in the other classes"
            reason += f" (robust z = {z:.1f}); {hits} samples flagged"
        else:
            verdict = "clean"
            reason = f"{tail}, in line with the other classes"
            if np.isfinite(z):
                reason += f" (robust z = {z:.1f})"
        findings.append(ClassFinding(code, name, count, hits, verdict, reason))
    return findings
