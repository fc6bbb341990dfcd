"""From detector scores to flags, without knowing the poison rate or the target class.

Two attacks leave different traces, so two rules decide, each on the evidence that fits it.

**Backdoor (a group that does not belong in its class).** Every class is robustly whitened
(:mod:`poisonguard.detectors.spectre`); a sample's *distance ratio* is its squared robust distance
over the median of the estimator's clean support (about 1 for a typical sample). Real classes
have far members too: rare styles, natural sub-types (e.g. two kinds of bag), mislabelled
samples. What marks a backdoor's poisons is that they are far from their class *and*

1. *easy*: the model fits them at least as well as the class's own core or as a typical class's
   core (the trigger is a shortcut; Li et al., NeurIPS 2021), whereas natural outliers are hard
   samples with low margins. (The typical core, the median over classes, matters when the target
   class itself is unusually easy: a 3x3 patch on the 8x8 digits' class 0, whose core has a mean
   margin of 12.4 against a median of 9.9 and the poisons' 10.5.)
2. *of diverse origin*: poisons come from several source classes, so the model's runner-up
   class varies among them much more than among the class's core samples.

A class is called a backdoor target when its far group (distance ratio above ``far_ratio``) is
at least ``min_group_share`` of the class, has a mean margin (area under the margin) at least
that of the core (ratio at most ``core_ratio``) or of the median class core, and its
runner-up-class entropy exceeds the
core's by ``min_entropy_gain`` (normalised entropies). Inside a called class, the samples beyond
the emptiest point of the distance-ratio histogram between the core and the far group are
flagged. Measured on Fashion-MNIST and digits (docs/benchmarks.md); the entropy test needs at
least four classes, so with fewer no class is called a backdoor target.

**Label noise (samples whose content says another class).** Out-of-sample probabilities from
cross-validated heads (:mod:`poisonguard.detectors.confident_learning`) give each sample's
probability of its given label, ``p_y``, and of its most probable class, ``p_max``. A sample
*looks like another class* when ``p_y < label_ratio * p_max``. Every dataset has a few such
samples, concentrated in a few confusable class pairs; injected noise spreads over the pairs. The
rule counts them for every ordered pair of classes (given, predicted) and takes the median count
over all pairs: with clean labels it is about 1 (Fashion-MNIST: 1), under random flips it grows
with the flip rate (5 % flips: 36, 10 %: 68). When that median is at least ``min_pair_count`` and
stands for at least ``min_noise_rate`` of the data, the labels are called noisy and every sample
that looks like another class (and is not already flagged as a backdoor) is flagged. (A ratio,
not a fixed ``p_y``: the calibrated heads put a floor of about ``noise rate / (K - 1)`` under
every probability.)

**Fused score.** Each detector is calibrated per class by a robust z-score (median and MAD); a
detector *fired* on a sample when its z exceeds ``fired_z``. The reported score lies in [0, 1]:
flagged samples score at least 0.5, the others less, and each side is ordered by the rules'
evidence (distance ratio and out-of-sample probability of the given label).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np

from poisonguard.ondisk import FeatureSource, map_rows, take_rows

__all__ = ["DecisionSettings", "Decision", "ClassEvidence", "decide", "robust_z"]

BACKDOOR = "backdoor"
LABEL_NOISE = "label-noise"


@dataclass(frozen=True)
class DecisionSettings:
    """Constants of the flagging rules (see the module docstring)."""

    far_ratio: float = 10.0
    core_ratio: float = 3.0
    min_group_share: float = 0.02
    min_group_size: int = 5
    min_entropy_gain: float = 0.3
    label_ratio: float = 0.05
    min_pair_count: int = 3
    min_noise_rate: float = 0.005
    fired_z: float = 3.0


@dataclass
class ClassEvidence:
    """What the backdoor rule measured in one class (NaN where not measured)."""

    code: int
    far_share: float = float("nan")
    far_margin: float = float("nan")
    core_margin: float = float("nan")
    typical_margin: float = float("nan")
    far_entropy: float = float("nan")
    core_entropy: float = float("nan")
    backdoor: bool = False
    cut_ratio: float = float("nan")
    label_flags: int = 0


@dataclass
class Decision:
    """Outcome of :func:`decide`.

    ``kind`` holds, per sample, ``"backdoor"``, ``"label-noise"`` or ``""``; ``fired`` maps each
    detector to the samples on which it fired; ``target_classes`` are the classes called backdoor
    targets; ``noisy_labels`` says whether the label-noise rule fired, ``pair_median`` is the
    median flagged count over class pairs it was decided on.
    """

    flagged: np.ndarray
    score: np.ndarray
    kind: np.ndarray
    fired: dict[str, np.ndarray]
    evidence: list[ClassEvidence]
    target_classes: list[int]
    noisy_labels: bool
    pair_median: float
    notes: list[str] = field(default_factory=list)

    @property
    def attack_kinds(self) -> list[str]:
        kinds = []
        if self.target_classes:
            kinds.append(BACKDOOR)
        if self.noisy_labels:
            kinds.append(LABEL_NOISE)
        return kinds


def robust_z(scores: FeatureSource, labels: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """Per-class robust z-score ``(s - median) / (1.4826 MAD)``; 0 in unscored classes.

    A class whose MAD is 0 (over half its scores tie) falls back to the mean absolute deviation,
    then to 1.
    """
    z = np.zeros(scores.shape[0], dtype=np.float64)
    for code in np.unique(labels):
        members = np.flatnonzero((labels == code) & scored)
        if members.size < 2:
            continue
        values = take_rows(scores, members).astype(np.float64)
        centre = np.median(values)
        spread = 1.4826 * np.median(np.abs(values - centre))
        if not spread > 0:
            spread = np.mean(np.abs(values - centre)) or 1.0
        z[members] = (values - centre) / spread
    return np.nan_to_num(z, nan=0.0, posinf=1e6, neginf=-1e6)


def decide(
    labels: np.ndarray,
    n_classes: int,
    scored_classes: np.ndarray,
    detector_scores: dict[str, FeatureSource],
    *,
    distance_ratio: FeatureSource | None,
    margin: FeatureSource,
    probabilities: FeatureSource,
    oos_probabilities: FeatureSource | None,
    settings: DecisionSettings = DecisionSettings(),
) -> Decision:
    """Flag samples (see the module docstring).

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    n_classes : int
    scored_classes : ndarray of bool, shape (K,)
        Classes large enough for the detectors.
    detector_scores : dict of str to ndarray (N,) or ArrayFile
        Read a class at a time.
    distance_ratio : ndarray (N,), ArrayFile or None
        From the robust whitening; ``None`` turns the backdoor rule off.
    margin : ndarray (N, E) or ArrayFile
        Per-epoch margins of the training run (for the area under the margin); read a class
        at a time.
    probabilities : ndarray (N, K) or ArrayFile
        The trained model's probabilities (for the runner-up class); read a class at a time.
    oos_probabilities : ndarray (N, K), ArrayFile or None
        Out-of-sample probabilities, read a block of rows at a time; ``None`` turns the
        label-noise rule off.
    settings : DecisionSettings
    """
    n = labels.shape[0]
    scored = scored_classes[labels]
    notes: list[str] = []
    # one detector's z-scores at a time: only whether it fired is kept
    fired = {
        name: robust_z(s, labels, scored) > settings.fired_z for name, s in detector_scores.items()
    }
    evidence = [ClassEvidence(int(c)) for c in range(n_classes)]
    kind = np.full(n, "", dtype=object)
    flagged = np.zeros(n, dtype=bool)

    # --- backdoor rule -------------------------------------------------------------------------
    targets: list[int] = []
    if distance_ratio is None:
        notes.append("backdoor rule off: the spectre detector did not run")
    elif int(scored_classes.sum()) < 4 or n_classes < 4:
        notes.append(
            "backdoor rule off: it compares runner-up classes, which needs at least 4 classes"
        )
    else:
        measured = []
        for code in np.flatnonzero(scored_classes):
            # one class's records at a time: margin and probabilities may stay in a file
            members = np.flatnonzero(labels == code)
            ratio = take_rows(distance_ratio, members)
            far, core = ratio > settings.far_ratio, ratio <= settings.core_ratio
            n_far, n_core = int(far.sum()), int(core.sum())
            item = evidence[code]
            item.far_share = n_far / members.size
            if n_core < settings.min_group_size:
                continue
            aum = _area_under_margin(margin, members)
            item.core_margin = float(aum[core].mean())
            if n_far < settings.min_group_size:
                continue
            item.far_margin = float(aum[far].mean())
            runner_up = _runner_up(take_rows(probabilities, members), code)
            item.far_entropy = _entropy(runner_up[far], n_classes)
            item.core_entropy = _entropy(runner_up[core], n_classes)
            measured.append((code, members, ratio))
        cores = [item.core_margin for item in evidence if np.isfinite(item.core_margin)]
        typical = float(np.median(cores)) if cores else float("nan")
        for code, members, ratio in measured:
            item = evidence[code]
            item.typical_margin = typical
            item.backdoor = bool(
                item.far_share >= settings.min_group_share
                and item.far_margin >= min(item.core_margin, typical)
                and item.far_entropy - item.core_entropy >= settings.min_entropy_gain
            )
            if item.backdoor:
                targets.append(int(code))
                item.cut_ratio = _emptiest_cut(ratio, settings.core_ratio, settings.far_ratio)
                hit = members[ratio > item.cut_ratio]
                flagged[hit] = True
                kind[hit] = BACKDOOR

    # --- label-noise rule ----------------------------------------------------------------------
    noisy, pair_median = False, float("nan")
    label_suspects = np.zeros(n, dtype=bool)
    if oos_probabilities is None:
        notes.append("label-noise rule off: the confident-learning detector did not run")
    else:
        looks_other = map_rows(partial(_looks_like_another, settings), oos_probabilities, labels)
        label_suspects = scored & looks_other
        suspects = np.flatnonzero(label_suspects)
        predicted = take_rows(oos_probabilities, suspects).argmax(axis=1)
        pairs = np.zeros((n_classes, n_classes), dtype=np.int64)
        np.add.at(pairs, (labels[suspects], predicted), 1)
        active = np.flatnonzero(scored_classes)
        if active.size >= 2:
            block = pairs[np.ix_(active, active)]
            off_diagonal = block[~np.eye(active.size, dtype=bool)]
            pair_median = float(np.median(off_diagonal))
            estimated_rate = pair_median * off_diagonal.size / max(n, 1)
            noisy = (
                pair_median >= settings.min_pair_count and estimated_rate >= settings.min_noise_rate
            )
        if noisy:
            hit = label_suspects & ~flagged
            flagged |= hit
            kind[hit] = LABEL_NOISE
            for code in range(n_classes):
                evidence[code].label_flags = int(np.count_nonzero(hit & (labels == code)))

    score = _fused_score(flagged, distance_ratio, oos_probabilities, labels, settings)
    return Decision(
        flagged=flagged,
        score=score,
        kind=kind,
        fired=fired,
        evidence=evidence,
        target_classes=targets,
        noisy_labels=noisy,
        pair_median=pair_median,
        notes=notes,
    )


def _area_under_margin(margin: FeatureSource, members: np.ndarray) -> np.ndarray:
    """Mean margin over the epochs of the samples ``members`` (0 without records)."""
    if margin.ndim < 2 or margin.shape[1] == 0:
        return np.zeros(members.size)
    return take_rows(margin, members).mean(axis=1)


def _looks_like_another(
    settings: DecisionSettings, probabilities: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """``p_y < label_ratio * p_max`` and another class is the most probable."""
    given = probabilities[np.arange(labels.shape[0]), labels]
    predicted = probabilities.argmax(axis=1)
    top = probabilities.max(axis=1)
    return (given < settings.label_ratio * top) & (predicted != labels)


def _given(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return probabilities[np.arange(labels.shape[0]), labels]


def _runner_up(probabilities: np.ndarray, code: int) -> np.ndarray:
    """The most probable class other than ``code``, for samples labelled ``code``."""
    others = np.array(probabilities, dtype=np.float64, copy=True)
    others[:, code] = -np.inf
    return others.argmax(axis=1)


def _entropy(classes: np.ndarray, n_classes: int) -> float:
    """Entropy of the class histogram, normalised by ``log(K - 1)`` (runner-ups exclude one)."""
    counts = np.bincount(classes, minlength=n_classes)
    share = counts[counts > 0] / classes.size
    return float(-(share * np.log(share)).sum() / np.log(max(n_classes - 1, 2)))


def _emptiest_cut(ratio: np.ndarray, low: float, far: float) -> float:
    """The distance ratio between the core and the far group where the class's log-histogram is
    emptiest.

    Searched from ``low`` to the median ratio of the far group (samples beyond ``far``); the
    far group starts beyond the cut; ties go to the smallest ratio (more recall). Small classes
    get fewer bins (one per 20 samples, 8 to 24), so that one stray sample does not make a bin.
    """
    bins = int(np.clip(ratio.size // 20, 8, 24))
    beyond = ratio[ratio > far]
    high = max(far, float(np.median(beyond))) if beyond.size else far
    edges = np.geomspace(low, high, bins + 1)
    counts, _ = np.histogram(ratio, bins=edges)
    best = int(np.argmin(counts))
    return float(np.sqrt(edges[best] * edges[best + 1]))


def _far_evidence(far_ratio: float, ratio: np.ndarray) -> np.ndarray:
    return ratio / (ratio + far_ratio)


def _fused_score(
    flagged: np.ndarray,
    distance_ratio: FeatureSource | None,
    oos_probabilities: FeatureSource | None,
    labels: np.ndarray,
    settings: DecisionSettings,
) -> np.ndarray:
    """Score in [0, 1]: at least 0.5 exactly for flagged samples; ordered by evidence inside."""
    n = labels.shape[0]
    evidence = np.zeros(n)
    if distance_ratio is not None:
        far = partial(_far_evidence, settings.far_ratio)
        evidence = np.maximum(evidence, map_rows(far, distance_ratio))
    if oos_probabilities is not None:
        given = map_rows(_given, oos_probabilities, labels)
        evidence = np.maximum(evidence, 1.0 - given)
    evidence = np.clip(np.nan_to_num(evidence), 0.0, 1.0)
    return np.where(flagged, 0.5 + 0.5 * evidence, 0.4999 * evidence)
