"""The per-class detectors (spectral signatures, SPECTRE, activation clustering) as class tasks.

These three look at one class at a time, so each class is a task of its own
(:func:`score_class`) that reads only that class's feature rows, 4,096 at a time
(:mod:`~poisonguard.detectors.class_rows`; the class's mean and scatter matrix,
:func:`~poisonguard.detectors.class_rows.class_basis`, are computed once and shared by the
three); a :class:`~poisonguard.tasks.TaskRunner` runs the tasks here or on a Dask cluster. A
task carries its class's :class:`~poisonguard.rows.Rows` (a file's path and the class's
positions, or, to another process, a copy of the class's rows in memory). Every class's
random draws come from :func:`~poisonguard.seeding.class_rng`, so the scores do not depend on
where or in which order the classes ran. :func:`per_class_scores` gathers them into per-sample
arrays (in a :class:`~poisonguard.rows.RowStore`), the same arrays the whole-dataset functions of
:mod:`~poisonguard.detectors.class_rows` return.

A class that the detectors cannot judge (identical samples: no spread in the features; a
robust core of coinciding samples) gets score 0 and a note saying why
(:attr:`PerClassScores.notes`), which the scan turns into a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from poisonguard.detectors.activation_clustering import ClassSplit
from poisonguard.detectors.class_rows import (
    class_basis,
    class_keys,
    robust_class_fit,
    spectral_class_scores,
    split_class,
)
from poisonguard.detectors.spectre import RobustClassFit
from poisonguard.rows import Rows, RowsLike, RowStore, Stored, as_rows
from poisonguard.seeding import class_rng
from poisonguard.tasks import LocalTasks, TaskRunner

__all__ = [
    "PER_CLASS_DETECTORS",
    "ClassTask",
    "ClassScores",
    "PerClassScores",
    "score_class",
    "per_class_scores",
]

PER_CLASS_DETECTORS = ("spectral", "spectre", "activation-clustering")


@dataclass(frozen=True)
class ClassTask:
    """One class's work: its code, its members (dataset indices), its feature rows and which
    detectors to run.

    ``rows`` are the class's rows (:meth:`~poisonguard.rows.Rows.for_task`: the local runner
    reads them from the whole feature array and so makes no copy; a Dask task carries only its
    class's rows, or the file's path).
    """

    code: int
    members: np.ndarray
    rows: Rows
    detectors: tuple[str, ...]
    seed: int
    reduce: str
    scored: bool
    split: bool


@dataclass(frozen=True)
class ClassScores:
    """One class's results, in the order of its members (None for a detector that did not run
    or found no usable direction), and notes on what could not be judged, and why."""

    code: int
    spectral: np.ndarray | None
    spectre: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    split: tuple[np.ndarray, np.ndarray, float] | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PerClassScores:
    """Per-sample results of every class: spectral scores, the robust fits (SPECTRE) and the
    activation-clustering scores and splits (arrays, or files of an out-of-core scan).

    ``notes`` holds, by class code, what the detectors could not judge in that class and why
    (or how they coped: a robust core fitted on the distinct samples); ``unfitted`` the
    classes large enough to score whose robust fit (SPECTRE, the backdoor tests' distance
    ratios) could not be made: their samples score 0 there."""

    spectral: Stored
    robust: RobustClassFit
    clusters: tuple[Stored, list[ClassSplit]]
    notes: dict[int, tuple[str, ...]] = field(default_factory=dict)
    unfitted: frozenset[int] = frozenset()


def score_class(task: ClassTask) -> ClassScores:
    """Run the chosen per-class detectors on one class (a task; see the module docstring)."""
    rows = task.rows  # read block by block, never whole
    basis = class_basis(rows)  # the class's mean and scatter, shared by the three detectors
    spectral = spectre = split = None
    notes: list[str] = []
    if not basis.has_spread:
        # identical samples: nothing to rank; every detector below gives them score 0
        notes.append(
            f"its {len(rows)} samples have the same features in the model (identical or all but "
            f"identical inputs), so the per-class detectors ({', '.join(task.detectors)}) cannot "
            "rank them: they score 0"
        )
    if task.scored and "spectral" in task.detectors:
        spectral = spectral_class_scores(rows, basis)
    # both fits draw their subsets by the rows' content keys: read the class once for them
    keys = class_keys(rows, class_rng(task.seed, task.code)) if basis.has_spread else None
    if task.scored and "spectre" in task.detectors:
        fit_notes: list[str] = []
        spectre = robust_class_fit(
            rows, class_rng(task.seed, task.code), basis=basis, notes=fit_notes, keys=keys
        )
        if basis.has_spread and spectre is None:
            why = "; ".join(fit_notes) or "no usable direction"
            notes.append(f"spectre could not fit a robust core ({why}): its samples score 0 there")
        elif basis.has_spread:
            notes.extend(f"spectre: {note}" for note in fit_notes)
    if task.split and "activation-clustering" in task.detectors:
        split = split_class(
            rows, class_rng(task.seed, task.code), reduce=task.reduce, basis=basis, keys=keys
        )
    return ClassScores(task.code, spectral, spectre, split, tuple(notes))


def per_class_scores(
    features: RowsLike,
    labels: np.ndarray,
    *,
    detectors: tuple[str, ...] = PER_CLASS_DETECTORS,
    min_class_size: int = 10,
    seed: int = 0,
    reduce: str = "pca",
    runner: TaskRunner | None = None,
    progress: bool = False,
    store: RowStore | None = None,
) -> PerClassScores:
    """Run the per-class ``detectors`` on every class of ``features`` ``(N, F)`` (an array, an
    :class:`~poisonguard.ondisk.ArrayFile` or :class:`~poisonguard.rows.Rows`), one task per
    class on ``runner`` (default: one after another in this process). Each task reads only its
    class's rows, a block at a time.

    Classes smaller than ``min_class_size`` (and than 2, or 4 for activation clustering) get
    score 0, as in the whole-dataset functions. The per-sample arrays go to ``store`` (default:
    memory; on an out-of-core scan, staging files read back as
    :class:`~poisonguard.ondisk.ArrayFile` objects).
    """
    unknown = [name for name in detectors if name not in PER_CLASS_DETECTORS]
    if unknown:
        raise ValueError(f"not per-class detectors: {', '.join(unknown)}")
    runner = runner or LocalTasks()
    store = store or RowStore()
    features = as_rows(features)
    labels = np.asarray(labels)
    tasks = []
    for code in np.unique(labels):
        members = np.flatnonzero(labels == code)
        scored = members.size >= max(2, min_class_size)
        split = members.size >= max(4, min_class_size)
        if not (scored or split):
            continue
        rows = features.subset(members).for_task(runner.shares_memory)
        tasks.append(
            ClassTask(int(code), members, rows, tuple(detectors), seed, reduce, scored, split)
        )
    results = runner.map(score_class, tasks, label="Per-class detectors", progress=progress)

    n = labels.shape[0]

    def gathered(pick) -> Stored:
        """One per-sample array from every class's results, kept in ``store``."""
        out = np.zeros(n)
        for task, result in zip(tasks, results, strict=True):
            values = pick(result)
            if values is not None:
                out[task.members] = values
        return store.keep(out)

    robust_scored = np.zeros(n, dtype=bool)
    splits = []
    notes: dict[int, tuple[str, ...]] = {}
    unfitted: set[int] = set()
    for task, result in zip(tasks, results, strict=True):
        if result.notes:
            notes[task.code] = result.notes
        if task.scored and "spectre" in task.detectors and result.spectre is None:
            unfitted.add(task.code)
        if result.spectre is not None:
            robust_scored[task.members] = True
        if result.split is not None:
            _, minority, separation = result.split
            members = task.members
            splits.append(ClassSplit(task.code, int(members.size), members[minority], separation))
    spectre_part = [lambda r, i=i: None if r.spectre is None else r.spectre[i] for i in range(3)]
    robust = RobustClassFit(*(gathered(pick) for pick in spectre_part), robust_scored)
    clusters = gathered(lambda r: None if r.split is None else r.split[0])
    return PerClassScores(
        gathered(lambda r: r.spectral), robust, (clusters, splits), notes, frozenset(unfitted)
    )
