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

from poisonguard.dataset import Dataset, align_classes
from poisonguard.decision import (
    BACKDOOR,
    LABEL_NOISE,
    SEPARATED_GROUP,
    Decision,
    DecisionSettings,
    decide,
)
from poisonguard.detectors import (
    PER_CLASS_DETECTORS,
    REDUCERS,
    DetectorInputs,
    TrustedSet,
    get_detectors,
)
from poisonguard.embed import EmbedSettings, available_cores, embed_dataset, embed_with
from poisonguard.ondisk import ArrayFile, Staging
from poisonguard.results import ClassFinding, Embedding, RuleOff, ScanResult
from poisonguard.rows import RowStore, as_rows, where
from poisonguard.tasks import LocalTasks, TaskRunner, task_runner

__all__ = [
    "RULE_DETECTORS",
    "ScanSettings",
    "rules_off",
    "scan_dataset",
    "scan_embedding",
    "scan_path",
]

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
    reduce : {"pca", "ica", "umap"}
        Reduction used by activation clustering.
    trusted : Path or None
        A small clean dataset in the same format; enables the ``trusted-influence`` detector.
    min_class_size : int
        Classes with fewer samples are not scored (a warning says so).
    epochs, batch_size, model_file
        Passed to :class:`~poisonguard.embed.EmbedSettings`.
    """

    detectors: tuple[str, ...] | None = None
    seed: int = 0
    reduce: str = "pca"
    trusted: Path | None = None
    min_class_size: int = 10
    epochs: int | None = None
    batch_size: int = 128
    model_file: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["model_file"] = None if self.model_file is None else str(self.model_file)
        values["trusted"] = None if self.trusted is None else str(self.trusted)
        chosen = get_detectors(self.detectors, trusted=self.trusted is not None)
        values["detectors"] = [d.name for d in chosen]
        values["decision"] = asdict(DecisionSettings())
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
    dask: str | None = None,
    chunk_rows: int | None = None,
    staging: Staging | None = None,
) -> ScanResult:
    """Load the dataset at ``path`` and scan it (see :func:`scan_dataset`).

    With ``staging`` (out of core, see :func:`poisonguard.ondisk.staging_area`), HDF5 and
    image-folder samples are copied block by block to a staging file instead of memory; the
    result reads them from there (thumbnails), so write the report before the staging area
    ends.
    """
    # reject an unknown detector or reduction before the slow steps
    get_detectors(settings.detectors, trusted=settings.trusted is not None)
    if settings.reduce not in REDUCERS:
        raise ValueError(f"unknown reduction {settings.reduce!r}; valid: {', '.join(REDUCERS)}")
    from poisonguard.loaders import load_dataset

    options = dict(
        format=format, x_key=x_key, y_key=y_key, label_column=label_column, id_column=id_column
    )
    # reach the cluster before reading the data, so that a wrong address fails fast
    with task_runner(dask, workers=available_cores()) as runner:
        start = time.perf_counter()
        dataset = load_dataset(path, skip_bad=skip_bad, staging=staging, **options)
        trusted = None
        if settings.trusted is not None:
            trusted = load_dataset(settings.trusted, **options)
        timings = {"load": time.perf_counter() - start}
        return _scan_dataset(
            dataset,
            settings,
            trusted=trusted,
            cache_dir=cache_dir,
            use_cache=use_cache,
            progress=progress,
            timings=timings,
            runner=runner,
            chunk_rows=chunk_rows,
            staging=staging,
        )


def scan_dataset(
    dataset: Dataset,
    settings: ScanSettings,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
    timings: dict[str, float] | None = None,
    trusted: Dataset | None = None,
    dask: str | None = None,
    chunk_rows: int | None = None,
    staging: Staging | None = None,
) -> ScanResult:
    """Embed ``dataset``, run the detectors and flag suspicious samples.

    ``trusted`` is a small clean dataset with the same classes and sample shape; it enables the
    ``trusted-influence`` detector. ``dask`` runs the embedding inference and the per-class
    detectors as tasks on a Dask cluster (``"local"`` starts one on this machine, anything else
    is a scheduler address); the scores are the same as without it (see
    :mod:`poisonguard.tasks`). ``chunk_rows`` makes the scan out of core: the features stay in
    the embedding cache file and are read ``chunk_rows`` rows, or one class, at a time (see
    :mod:`poisonguard.ondisk`); the scores are the same as in memory. With ``staging`` too
    (:func:`~poisonguard.ondisk.staging_area`), the per-sample results are kept in staging
    files as well (see :func:`scan_embedding`).
    """
    get_detectors(settings.detectors, trusted=trusted is not None)  # fail before training
    with task_runner(dask, workers=available_cores()) as runner:
        return _scan_dataset(
            dataset,
            settings,
            cache_dir=cache_dir,
            use_cache=use_cache,
            progress=progress,
            timings=timings,
            trusted=trusted,
            runner=runner,
            chunk_rows=chunk_rows,
            staging=staging,
        )


def _scan_dataset(
    dataset: Dataset,
    settings: ScanSettings,
    *,
    cache_dir: str | Path | None,
    use_cache: bool,
    progress: bool,
    timings: dict[str, float] | None,
    trusted: Dataset | None,
    runner: TaskRunner,
    chunk_rows: int | None = None,
    staging: Staging | None = None,
) -> ScanResult:
    timings = dict(timings or {})
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
        runner=runner,
        chunk_rows=chunk_rows,
        staging=staging,
    )
    timings["embed"] = time.perf_counter() - start
    for stage, seconds in embedding.stage_seconds.items():
        timings[f"embed:{stage}"] = seconds
    return scan_embedding(
        dataset,
        embedding,
        settings,
        trusted=trusted,
        timings=timings,
        runner=runner,
        progress=progress,
        staging=staging,
    )


def scan_embedding(
    dataset: Dataset,
    embedding: Embedding,
    settings: ScanSettings,
    *,
    trusted: Dataset | None = None,
    timings: dict[str, float] | None = None,
    runner: TaskRunner | None = None,
    progress: bool = False,
    staging: Staging | None = None,
) -> ScanResult:
    """Run the detectors on an embedding of ``dataset`` and flag suspicious samples.

    The part of :func:`scan_dataset` after the embedding; benchmarks call it on synthetic
    embeddings. The per-class detectors run as one task per class on ``runner`` (default: in
    this process, one after another). With ``staging`` (an out-of-core scan, see
    :func:`~poisonguard.ondisk.staging_area`) every detector's scores and the per-sample
    results they share go to staging files as they are computed, and the result reads them
    from there: write the report before the staging area ends.
    """
    detectors = get_detectors(settings.detectors, trusted=trusted is not None)
    timings = dict(timings or {})
    warnings_: list[str] = []
    counts = dataset.class_counts()
    scored = counts >= max(2, settings.min_class_size)
    for code in np.flatnonzero(~scored):
        warnings_.append(
            f"class {dataset.class_names[code]!r} has {counts[code]} samples, fewer than "
            f"{settings.min_class_size}: too small for the detectors, not scored"
        )
        logger.warning(warnings_[-1])

    trusted_set = None
    if trusted is not None:
        start = time.perf_counter()
        trusted_set = _embed_trusted(trusted, dataset, embedding, settings)
        timings["embed:trusted"] = time.perf_counter() - start

    inputs = DetectorInputs(
        embedding,
        dataset.labels,
        min_class_size=settings.min_class_size,
        seed=settings.seed,
        reduce=settings.reduce,
        trusted=trusted_set,
        per_class_detectors=tuple(d.name for d in detectors if d.name in PER_CLASS_DETECTORS),
        runner=runner or LocalTasks(),
        progress=progress,
        store=RowStore(staging),
        table=dataset.x if dataset.kind == "table" else None,
    )
    unjudged: dict[int, str] = {}
    if inputs.per_class_detectors:
        start = time.perf_counter()
        per_class = inputs.per_class  # runs the per-class tasks together, timed on their own
        timings["detectors:per-class"] = time.perf_counter() - start
        unjudged = _per_class_warnings(dataset, per_class, scored, warnings_)
    detector_scores: dict[str, np.ndarray | ArrayFile] = {}
    for detector in detectors:
        start = time.perf_counter()
        detector_scores[detector.name] = inputs.store.keep_scores(detector.run(inputs))
        timings[f"detector:{detector.name}"] = time.perf_counter() - start

    start = time.perf_counter()
    chosen = {d.name for d in detectors}
    decision = decide(
        dataset.labels,
        dataset.n_classes,
        scored,
        detector_scores,
        distance_ratio=(
            inputs.robust_fits.distance_ratio if RULE_DETECTORS["backdoor"] in chosen else None
        ),
        margin=embedding.margin,
        probabilities=embedding.probabilities,
        oos_probabilities=(
            inputs.out_of_sample_probabilities if RULE_DETECTORS["label-noise"] in chosen else None
        ),
    )
    off = rules_off(chosen)
    for note in decision.notes:
        warnings_.append(note)
        # a rule off for want of its detector is logged once, by the clearer message below
        if not any(rule.detector in note for rule in off):
            logger.warning(note)
    for rule in off:
        logger.warning(rule.message)
    findings = _class_findings(dataset, decision, counts, scored, off, unjudged)
    predicting = (
        inputs.out_of_sample_probabilities
        if "confident-learning" in chosen
        else embedding.probabilities
    )
    reasons = _sample_reasons(dataset, decision)
    timings["decide"] = time.perf_counter() - start

    return ScanResult(
        dataset=dataset,
        embedding=embedding,
        detector_scores=detector_scores,
        score=decision.score,
        flagged=decision.flagged,
        threshold=FLAG_THRESHOLD,
        class_findings=findings,
        reasons=reasons,
        fired={name: decision.fired[name] for name in detector_scores},
        target_classes=[dataset.class_names[c] for c in decision.target_classes],
        attack_kinds=decision.attack_kinds,
        finding=np.asarray(decision.kind, dtype=object),
        predicted=as_rows(predicting).map(_most_probable).astype(np.int64),
        predicted_probability=as_rows(predicting).map(_top_probability).astype(np.float64),
        settings=settings.as_dict(),
        timings=timings,
        warnings=warnings_,
        rules_off=off,
        execution={
            "tasks": inputs.runner.description,
            "samples": where(dataset.x, staged=True),
            "features": where(embedding.features),
            # training's thread count changes the scores (see embed.torch_threads)
            "torch_threads": embedding.model.get("training", {}).get("torch_threads"),
        },
    )


def _most_probable(probabilities: np.ndarray) -> np.ndarray:
    return probabilities.argmax(axis=1)


def _top_probability(probabilities: np.ndarray) -> np.ndarray:
    return probabilities.max(axis=1)


RULE_DETECTORS = {"backdoor": "spectre", "label-noise": "confident-learning"}
"""The decision's contract: the detector each flagging rule needs (:func:`rules_off`). The
backdoor tests (separated-group and mixed-origin) rank a class's samples by spectre's robust
distance ratios; the label-noise rule reads confident learning's out-of-sample probabilities."""

_RULE_TEXT = {
    # rule: (its name, what its warning starts with, what it takes from its detector, what
    # goes unflagged without it)
    "backdoor": (
        "the backdoor tests",
        "the backdoor tests (separated-group and mixed-origin) did not run: they need",
        "its robust distance ratios",
        "backdoor poisons",
    ),
    "label-noise": (
        "the label-noise rule",
        "the label-noise rule did not run: it needs",
        "its out-of-sample probabilities",
        "mislabelled samples",
    ),
}


def rules_off(detectors) -> list[RuleOff]:
    """The flagging rules that cannot run with only ``detectors`` (names) selected.

    :func:`~poisonguard.decision.decide` turns a rule off when the detector it needs did not
    run (see :data:`RULE_DETECTORS`); a scan that then flags nothing has not ruled that attack
    out, and the report and the command line say so.
    """
    chosen = set(detectors)
    off = []
    for rule, detector in RULE_DETECTORS.items():
        if detector in chosen:
            continue
        name, did_not_run, needs, missed = _RULE_TEXT[rule]
        off.append(
            RuleOff(
                rule=rule,
                detector=detector,
                needs=needs,
                summary=f"{name} did not run ({detector} not selected)",
                message=(
                    f"{did_not_run} the {detector} detector ({needs}), which the selected "
                    f"detectors (--detectors) leave out, so {missed} are not flagged; add "
                    f"{detector} to --detectors to run it"
                ),
            )
        )
    return off


FLAG_THRESHOLD = 0.5
"""Fused scores of flagged samples are at least this, of the others below it."""


def _embed_trusted(
    trusted: Dataset, dataset: Dataset, embedding, settings: ScanSettings
) -> TrustedSet:
    """Embed the trusted set with the scan's model; its classes must be the dataset's."""
    trusted = align_classes(trusted, dataset, role="trusted set")
    labels = trusted.labels
    features, probabilities = embed_with(embedding, trusted.x, model_file=settings.model_file)
    return TrustedSet(features, probabilities, labels)


def _sample_reasons(dataset: Dataset, decision: Decision) -> list[str]:
    """A plain-words reason for every flagged sample ("" for the others)."""
    names = dataset.class_names
    reasons = [""] * dataset.n_samples
    fired_names = list(decision.fired)
    for i in np.flatnonzero(decision.flagged):
        label = names[int(dataset.labels[i])]
        detectors = [name for name in fired_names if decision.fired[name][i]]
        fired = f"; detectors that fired: {', '.join(detectors)}" if detectors else ""
        if decision.kind[i] == BACKDOOR:
            if decision.evidence[int(dataset.labels[i])].rule == SEPARATED_GROUP:
                group = "a group that stands apart from the rest of"
            else:
                group = "a far, easily learned group of mixed origin inside"
            reasons[i] = f"part of {group} class {label!r} (suspected backdoor target){fired}"
        elif decision.kind[i] == LABEL_NOISE:
            ratio = DecisionSettings().label_ratio
            reasons[i] = (
                f"labelled {label!r} but a model that never saw it finds another class over "
                f"{1 / ratio:g} times more likely{fired}"
            )
    return reasons


def _per_class_warnings(
    dataset: Dataset, per_class, scored: np.ndarray, warnings_: list[str]
) -> dict[int, str]:
    """Log and add to ``warnings_`` what the per-class detectors could not judge in each class
    (identical samples, a robust core of copies) and how they coped; returns, by class code,
    why the backdoor tests could not judge the classes whose robust fit failed."""
    unjudged: dict[int, str] = {}
    for code, notes in sorted(per_class.notes.items()):
        if not scored[code]:
            continue  # already said: too small to score
        name = dataset.class_names[code]
        text = "; ".join(notes)
        if code in per_class.unfitted:
            unjudged[code] = text
            text += "; the backdoor tests could not judge this class"
        warnings_.append(f"class {name!r}: {text}")
        logger.warning(warnings_[-1])
    for code in sorted(per_class.unfitted - set(unjudged)):
        if scored[code]:
            unjudged[code] = "spectre could not fit a robust core"
    return unjudged


def _class_findings(
    dataset: Dataset,
    decision: Decision,
    counts: np.ndarray,
    scored: np.ndarray,
    off: list[RuleOff] | tuple = (),
    unjudged: dict[int, str] | None = None,
) -> list[ClassFinding]:
    """Each class's verdict; a class where nothing was found is ``"clean"`` only when no rule
    was off (``off``) and the backdoor tests could judge it (not in ``unjudged``, which says
    why by class code), else ``"not-cleared"``."""
    unjudged = unjudged or {}
    findings = []
    flagged_counts = np.bincount(dataset.labels[decision.flagged], minlength=dataset.n_classes)
    for code, name in enumerate(dataset.class_names):
        count, hits = int(counts[code]), int(flagged_counts[code])
        item = decision.evidence[code]
        far = f"{item.far_share:.1%} of the class lies far from its core"
        if not scored[code]:
            verdict, reason = "skipped", f"only {count} samples; too few for the detectors"
        elif item.backdoor and item.rule == SEPARATED_GROUP:
            verdict = "backdoor-target"
            gap = item.gap
            reason = (
                f"{gap.size} samples stand apart from the rest of the class: an empty stretch of "
                f"distance ratios between {gap.lower:.3g} and {gap.upper:.3g} that a class "
                f"without such a group would show with probability {gap.p_value:.1e} "
                f"(separated-group test); a model that never saw them still puts "
                f"{item.group_agrees:.0%} of them in this class, so they are not mislabelled "
                f"samples of another class; {hits} samples flagged"
            )
        elif item.backdoor:
            verdict = "backdoor-target"
            if item.easy:
                easier = "the core" if item.far_margin >= item.core_margin else "a typical class"
                apart = (
                    f"that group is learned more easily than {easier} (mean margin "
                    f"{item.far_margin:.2f} vs {item.core_margin:.2f} for the core, "
                    f"{item.typical_margin:.2f} for a typical class)"
                )
            else:
                apart = (
                    f"that group ends at an empty stretch of distance ratios between "
                    f"{item.gap.lower:.3g} and {item.gap.upper:.3g} that a class without such "
                    f"a group would show with probability {item.gap.p_value:.1e}, so it is not "
                    f"the class's natural outliers"
                )
            reason = (
                f"{far}; {apart}, and its runner-up classes are more varied (entropy "
                f"{item.far_entropy:.2f} vs {item.core_entropy:.2f}), as poisons from several "
                f"source classes are; {hits} samples flagged"
            )
        elif item.label_flags:
            verdict = "noisy-labels"
            reason = (
                f"{item.label_flags} samples look like another class to a model that never saw "
                "them, and such samples are spread over many class pairs in this dataset"
            )
        elif code in unjudged:
            verdict = "not-cleared"
            reason = (
                f"nothing flagged, but the backdoor tests could not judge this class: "
                f"{unjudged[code]}"
            )
            if off:
                reason += f"; and {' and '.join(rule.summary for rule in off)}"
        else:
            verdict = "not-cleared" if off else "clean"
            reason = _clean_reason(item, far, off)
        if verdict == "backdoor-target":
            evidence = item.rule
        elif verdict == "noisy-labels":
            evidence = "label-noise-spread"
        else:
            evidence = ""
        findings.append(ClassFinding(code, name, count, hits, verdict, reason, evidence))
    return findings


def _clean_reason(item, far: str, off: list[RuleOff] | tuple = ()) -> str:
    if off:
        skipped = " and ".join(rule.summary for rule in off)
        if not np.isfinite(item.far_share):  # the backdoor tests did not run
            return f"nothing flagged, but {skipped}"
        return f"{_clean_reason(item, far)}; but {skipped}"
    if not np.isfinite(item.far_share):
        return "no backdoor rule was run; no label-noise flags"
    if not np.isfinite(item.far_margin) or item.far_share < DecisionSettings().min_group_share:
        return f"{far}; too few far samples to form a group"
    if item.far_margin < min(item.core_margin, item.typical_margin):
        return (
            f"{far}, but those samples are harder to learn than the core and than a typical "
            "class: natural outliers"
        )
    return (
        f"{far}; those samples are easy to learn but their runner-up classes are not more "
        f"varied than the core's (entropy {item.far_entropy:.2f} vs {item.core_entropy:.2f})"
    )
