"""Detectors: plain functions over arrays, registered by name.

Each detector maps what the embedding model learned (features, probabilities, training
dynamics) and the given labels to one suspicion score per sample, **higher = more suspicious**.
Scores are comparable within a class, not across detectors; :mod:`poisonguard.decision`
calibrates them per class and turns them into flags.

The registry adapts each function to one call signature, ``run(inputs) -> scores``, where
``inputs`` is a :class:`DetectorInputs`. The detector modules see arrays only; this registry and
its adapters do the walking over rows that may be in memory or in a file
(:class:`~poisonguard.rows.Rows`): functions whose score for a sample depends on that sample's
records only (early loss, TracIn, AUM, confident learning's ``1 - p_y``) are applied to blocks of
rows (:meth:`~poisonguard.rows.Rows.map`); the detectors that pass over every sample are walked
by :mod:`~poisonguard.detectors.streaming`, the per-class ones class by class by
:mod:`~poisonguard.detectors.class_rows` as tasks of :mod:`~poisonguard.detectors.per_class`.
:class:`DetectorInputs` checks the embedding once, as it enters the detectors. Work that several
detectors and the decision share (the robust whitening of each class, the out-of-sample
probabilities) is computed once, on first use, and kept in its :class:`~poisonguard.rows.RowStore`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from poisonguard.detectors import validation
from poisonguard.detectors.activation_clustering import REDUCERS, ClassSplit
from poisonguard.detectors.confident_learning import confident_learning_scores
from poisonguard.detectors.influence import tracin_self_influence
from poisonguard.detectors.per_class import PER_CLASS_DETECTORS, PerClassScores, per_class_scores
from poisonguard.detectors.spectre import RobustClassFit
from poisonguard.detectors.streaming import (
    influence_self_scores,
    knn_label_disagreement,
    out_of_sample_probabilities,
    trusted_influence_scores,
)
from poisonguard.detectors.training_dynamics import area_under_margin_scores, early_loss_scores
from poisonguard.machine import available_cores
from poisonguard.plugins import DETECTOR_GROUP, PluginFailure, discover
from poisonguard.results import Embedding
from poisonguard.rows import RowsLike, RowStore, as_rows
from poisonguard.tasks import LocalTasks, TaskRunner

__all__ = [
    "ARRAY_INPUTS",
    "BACKDOOR",
    "LABEL_NOISE",
    "DETECTORS",
    "Detector",
    "array_detector",
    "load_plugins",
    "DetectorInputs",
    "PER_CLASS_DETECTORS",
    "TrustedSet",
    "get_detectors",
    "REDUCERS",
]

BACKDOOR = "backdoor"
LABEL_NOISE = "label-noise"


@dataclass(frozen=True)
class TrustedSet:
    """A small clean set embedded by the same model: features, probabilities and labels."""

    features: np.ndarray
    probabilities: np.ndarray
    labels: np.ndarray


@dataclass
class DetectorInputs:
    """Everything a detector may read, plus the work detectors share (computed once).

    Parameters
    ----------
    embedding : Embedding
    labels : ndarray of int, shape (N,)
    min_class_size : int
        Classes with fewer samples are not scored.
    seed : int
    reduce : {"pca", "ica", "umap"}
        Reduction used by activation clustering.
    trusted : TrustedSet or None
        Enables the ``trusted-influence`` detector.
    per_class_detectors : tuple of str
        The per-class detectors the scan runs; :attr:`per_class` runs them together, one task
        per class.
    runner : TaskRunner
        Where the per-class tasks run (default: here, one after another).
    progress : bool
        Show a progress bar over the per-class tasks.
    store : RowStore
        Where the shared per-sample results (per-class scores, out-of-sample probabilities)
        go: memory, or an out-of-core scan's staging folder, read back a block or a class at a
        time.
    table : ndarray (N, D), ArrayFile or None
        The raw columns of a table dataset. The out-of-sample heads are fitted on them instead
        of the features: a model trained on every row memorises flipped labels in its
        features, so heads on those features are not out of sample (the shipped breast-cancer
        table with 57 of 569 labels flipped: AUROC of ``1 - p_y`` 0.88 on the features, 0.97
        on the columns; concatenating both: 0.87).

    Raises
    ------
    ValueError
        If the embedding's features ``(N, F)``, probabilities ``(N, K)`` (softmax outputs),
        the labels ``(N,)`` in ``[0, K)`` or the table do not fit together, or hold NaN or
        infinite values. Values are checked here, once, in a pass over the rows (not when the
        embedding came from the cache, which checked them on reading), so the detectors do not
        check them again.
    """

    embedding: Embedding
    labels: np.ndarray
    min_class_size: int = 10
    seed: int = 0
    reduce: str = "pca"
    trusted: TrustedSet | None = None
    per_class_detectors: tuple[str, ...] = PER_CLASS_DETECTORS
    runner: TaskRunner = field(default_factory=LocalTasks)
    progress: bool = False
    store: RowStore = field(default_factory=RowStore)
    table: RowsLike | None = None

    def __post_init__(self) -> None:
        features = as_rows(self.embedding.features)
        probabilities = as_rows(self.embedding.probabilities)
        validation.check_matrix(features.shape)
        validation.check_matrix(probabilities.shape, "probabilities", "K")
        n = features.shape[0]
        if probabilities.shape[0] != n:
            raise ValueError(
                f"probabilities must have shape (N, K) = ({n}, K) to match features of shape "
                f"{features.shape}; got {probabilities.shape}"
            )
        self.labels = validation.check_labels(self.labels, n, probabilities.shape[1])
        checks = [] if self.embedding.from_cache else [(features, "features")]
        if self.table is not None:
            table = as_rows(self.table)
            validation.check_matrix(table.shape, "table columns", "D")
            if table.shape[0] != n:
                raise ValueError(f"the table has {table.shape[0]} rows for {n} samples")
            checks.append((table, "table columns"))
        for rows, name in checks:
            for _, block in rows.blocks():
                validation.check_finite(block, name)
        if not self.embedding.from_cache:
            for _, block in probabilities.blocks():
                validation.check_probabilities(block)
        if self.trusted is not None:  # in memory, and small
            validation.check_finite(self.trusted.features, "trusted features")
            validation.check_probabilities(self.trusted.probabilities, "trusted probabilities")

    @property
    def n_classes(self) -> int:
        return int(self.embedding.probabilities.shape[1])

    @cached_property
    def per_class(self) -> PerClassScores:
        """The per-class detectors' results, one task per class (see
        :mod:`poisonguard.detectors.per_class`)."""
        return self._per_class(self.per_class_detectors)

    def _per_class(self, detectors: tuple[str, ...]) -> PerClassScores:
        return per_class_scores(
            self.embedding.features,
            self.labels,
            detectors=detectors,
            min_class_size=self.min_class_size,
            seed=self.seed,
            reduce=self.reduce,
            runner=self.runner,
            progress=self.progress,
            store=self.store,
        )

    def per_class_result(self, name: str) -> PerClassScores:
        """:attr:`per_class` when it covers detector ``name``, else that detector's run alone."""
        return self.per_class if name in self.per_class_detectors else self._per_class((name,))

    @cached_property
    def robust_fits(self) -> RobustClassFit:
        """Each class's robustly whitened top subspace (SPECTRE's first steps)."""
        return self.per_class_result("spectre").robust

    @cached_property
    def out_of_sample_probabilities(self) -> np.ndarray:
        """Cross-validated class probabilities from linear heads on the features (on the raw
        columns of a table)."""
        return out_of_sample_probabilities(
            self.embedding.features if self.table is None else self.table,
            self.labels,
            n_classes=self.n_classes,
            seed=self.seed,
            store=self.store,
            check_finite=False,
        )

    @cached_property
    def activation_clusters(self) -> tuple[np.ndarray, list[ClassSplit]]:
        return self.per_class_result("activation-clustering").clusters


@dataclass(frozen=True)
class Detector:
    """A registered detector.

    ``run(inputs)`` returns one finite score per sample, higher = more suspicious. ``family``
    says what it looks for (``"backdoor"``: a group that does not belong in its class;
    ``"label-noise"``: samples whose content says another class); ``needs_trusted`` detectors
    run only when a trusted clean set is given.
    """

    name: str
    run: Callable[[DetectorInputs], np.ndarray]
    family: str
    summary: str
    needs_trusted: bool = False
    plugin: str = ""
    """The distribution (``"name version"``) of a plug-in detector; empty for a built-in."""


ARRAY_INPUTS: dict[str, Callable[[DetectorInputs], RowsLike]] = {
    "features": lambda inputs: inputs.embedding.features,
    "probabilities": lambda inputs: inputs.embedding.probabilities,
    "labels": lambda inputs: inputs.labels,
    "loss": lambda inputs: inputs.embedding.loss,
    "margin": lambda inputs: inputs.embedding.margin,
    "gradient_sq": lambda inputs: inputs.embedding.gradient_sq,
    "oos_probabilities": lambda inputs: inputs.out_of_sample_probabilities,
}
"""The arrays :func:`array_detector` can pass to a function, by name: the model's features
``(N, D)`` and probabilities ``(N, K)``, the labels ``(N,)``, the training records ``(N, E)``
(loss, margin and squared last-layer gradient norm per epoch) and the out-of-sample
probabilities ``(N, K)`` the label-noise rule uses."""


def array_detector(
    name: str,
    function: Callable[..., np.ndarray],
    *,
    family: str,
    summary: str,
    inputs: tuple[str, ...] = ("features", "labels"),
    per_row: bool = False,
) -> Detector:
    """A :class:`Detector` from a plain array function: ``function(*arrays) -> scores``.

    ``inputs`` names the arrays passed, in order (keys of :data:`ARRAY_INPUTS`). The function
    gets them in memory; with ``per_row=True`` (a score that depends on the sample's own rows
    only, like a mean loss) it is called on consecutive blocks of rows of every array instead,
    so an out-of-core scan never holds them whole. This is how a plug-in detector is written
    (CONTRIBUTING.md).
    """
    unknown = [key for key in inputs if key not in ARRAY_INPUTS]
    if unknown or not inputs:
        raise ValueError(
            f"detector {name!r}: unknown input(s) {', '.join(unknown) or '(none given)'}; "
            f"valid: {', '.join(ARRAY_INPUTS)}"
        )
    if family not in (BACKDOOR, LABEL_NOISE):
        raise ValueError(f"detector {name!r}: family must be {BACKDOOR!r} or {LABEL_NOISE!r}")

    def run(detector_inputs: DetectorInputs) -> np.ndarray:
        arrays = [ARRAY_INPUTS[key](detector_inputs) for key in inputs]
        if per_row:
            return as_rows(arrays[0]).map(function, *(as_rows(a).whole() for a in arrays[1:]))
        return np.asarray(function(*(as_rows(a).whole() for a in arrays)))

    run.__name__ = run.__qualname__ = f"array_detector[{name}]"
    return Detector(name, run, family, summary)


def _spectral(inputs: DetectorInputs) -> np.ndarray:
    return inputs.per_class_result("spectral").spectral


def _spectre(inputs: DetectorInputs) -> np.ndarray:
    return inputs.robust_fits.que


def _activation_clustering(inputs: DetectorInputs) -> np.ndarray:
    return inputs.activation_clusters[0]


def _early_loss(inputs: DetectorInputs) -> np.ndarray:
    return as_rows(inputs.embedding.loss).map(early_loss_scores)


def _tracin(inputs: DetectorInputs) -> np.ndarray:
    return as_rows(inputs.embedding.gradient_sq).map(tracin_self_influence)


def _influence(inputs: DetectorInputs) -> np.ndarray:
    embedding = inputs.embedding
    return influence_self_scores(
        embedding.features, embedding.probabilities, inputs.labels, check_finite=False
    )


def _trusted_influence(inputs: DetectorInputs) -> np.ndarray:
    if inputs.trusted is None:
        raise ValueError("the trusted-influence detector needs a trusted set (--trusted)")
    embedding, trusted = inputs.embedding, inputs.trusted
    return trusted_influence_scores(
        embedding.features,
        embedding.probabilities,
        inputs.labels,
        trusted.features,
        trusted.probabilities,
        trusted.labels,
        check_finite=False,
    )


def _confident_learning(inputs: DetectorInputs) -> np.ndarray:
    return as_rows(inputs.out_of_sample_probabilities).map(confident_learning_scores, inputs.labels)


def _knn_labels(inputs: DetectorInputs) -> np.ndarray:
    features = inputs.embedding.features
    # the search runs in this process: on its cores, whatever runs the tasks
    return knn_label_disagreement(
        features, inputs.labels, seed=inputs.seed, check_finite=False, workers=available_cores()
    )


def _area_under_margin(inputs: DetectorInputs) -> np.ndarray:
    return as_rows(inputs.embedding.margin).map(area_under_margin_scores)


DETECTORS: dict[str, Detector] = {
    detector.name: detector
    for detector in [
        Detector(
            "spectral",
            _spectral,
            BACKDOOR,
            "squared projection on the class's top singular direction (Tran et al., 2018)",
        ),
        Detector(
            "spectre",
            _spectre,
            BACKDOOR,
            "QUantum Entropy score after robust whitening of the class's top subspace "
            "(SPECTRE; Hayase et al., 2021)",
        ),
        Detector(
            "activation-clustering",
            _activation_clustering,
            BACKDOOR,
            "position between the two k-means clusters of the class's reduced features "
            "(Chen et al., 2019)",
        ),
        Detector(
            "early-loss",
            _early_loss,
            BACKDOOR,
            "low loss in the first epochs: backdoors are learned faster (Li et al., 2021)",
        ),
        Detector(
            "tracin",
            _tracin,
            LABEL_NOISE,
            "TracIn self-influence of the last layer over the training epochs "
            "(Pruthi et al., 2020)",
        ),
        Detector(
            "influence",
            _influence,
            LABEL_NOISE,
            "last-layer influence-function self-influence, damped exact Hessian "
            "(Koh & Liang, 2017)",
        ),
        Detector(
            "trusted-influence",
            _trusted_influence,
            LABEL_NOISE,
            "how much up-weighting the sample raises the loss of the trusted clean set "
            "(Koh & Liang, 2017)",
            needs_trusted=True,
        ),
        Detector(
            "confident-learning",
            _confident_learning,
            LABEL_NOISE,
            "1 - out-of-sample probability of the given label, cross-validated heads "
            "(Northcutt et al., 2021)",
        ),
        Detector(
            "knn-labels",
            _knn_labels,
            LABEL_NOISE,
            "share of the 10 nearest neighbours in feature space with another label "
            "(Bahri et al., 2020)",
        ),
        Detector(
            "aum",
            _area_under_margin,
            LABEL_NOISE,
            "minus the area under the margin over training (Pleiss et al., 2020)",
        ),
    ]
}


def _check_plugin(detector: Detector) -> None:
    if not isinstance(detector.name, str) or not detector.name or "," in detector.name:
        raise ValueError(f"the name {detector.name!r} is not a non-empty name without commas")
    if not callable(detector.run):
        raise TypeError("its run is not callable")
    if detector.family not in (BACKDOOR, LABEL_NOISE):
        raise ValueError(f"its family {detector.family!r} is not {BACKDOOR!r} or {LABEL_NOISE!r}")


PLUGIN_FAILURES: list[PluginFailure] = []
"""Entry points of the ``poisonguard.detectors`` group that were left out, and why."""
_PLUGINS: list[str] = []  # the names of the loaded plug-ins


def load_plugins(*, again: bool = False) -> list[str]:
    """Add the detectors installed packages register under ``poisonguard.detectors`` to
    :data:`DETECTORS`, once (``again``: forget them and look again, for a package installed
    while running). Called by :func:`get_detectors`, not on import, so that a plug-in module
    may import this package. Returns the plug-ins' names."""
    global _loaded
    if _loaded and not again:
        return list(_PLUGINS)
    for name in _PLUGINS:
        DETECTORS.pop(name, None)
    found, failures = discover(DETECTOR_GROUP, Detector, DETECTORS.__contains__, _check_plugin)
    for detector, distribution in found:
        DETECTORS[detector.name] = replace(detector, plugin=distribution)
    _PLUGINS[:] = [detector.name for detector, _ in found]
    PLUGIN_FAILURES[:] = failures
    _loaded = True
    return list(_PLUGINS)


_loaded = False


def get_detectors(
    names: str | list[str] | tuple[str, ...] | None, *, trusted: bool = False
) -> list[Detector]:
    """Detectors by name (a list or a comma-separated string).

    ``None`` or ``"all"`` gives every detector, leaving out those that need a trusted set when
    ``trusted`` is false. Raises ``ValueError`` listing the valid names for an unknown one, and
    for a detector that needs a trusted set when none is given.
    """
    load_plugins()
    if names is None or names == "all":
        return [d for d in DETECTORS.values() if trusted or not d.needs_trusted]
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in DETECTORS]
    if unknown or not names:
        why = [f.describe() for f in PLUGIN_FAILURES if f.name in unknown]
        raise ValueError(
            f"unknown detector(s) {', '.join(unknown) or '(none given)'}; "
            f"valid: {', '.join(DETECTORS)}" + "".join(f"; {line}" for line in why)
        )
    chosen = [DETECTORS[n] for n in dict.fromkeys(names)]
    missing = [d.name for d in chosen if d.needs_trusted and not trusted]
    if missing:
        raise ValueError(f"detector(s) {', '.join(missing)} need a trusted clean set (--trusted)")
    return chosen
