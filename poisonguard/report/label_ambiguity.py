"""How ambiguous the labels look: the data's own disagreement with its labels, stated apart
from any flag.

Short reviews, crowd labels and look-alike classes disagree with their given label for reasons
that are not poisoning: "not bad at all" under a negative label, a shirt labelled "T-shirt".
The decision does not flag such samples unless they form a pattern (a backdoor group, or
out-of-sample disagreement spread over the class pairs as random flips leave it), but a reviewer
still wants to know how noisy the labels are. :func:`label_ambiguity` states it: the share of
samples that a model that never saw them predicts as another class, overall, per class and at
high confidence, among the unflagged samples too.

The predictions are ``scores.csv``'s ``predicted_label`` (:attr:`ScanResult.predicted`): out of
sample when the ``confident-learning`` detector ran. Otherwise they come from the embedding
model, which trained on every sample with its label and so agrees with most labels, noisy or
not; the entry says so and its share is no measure of ambiguity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["CONFIDENT", "label_ambiguity"]

CONFIDENT = 0.9
"""A disagreement is *confident* when the model gives the class it predicts at least this
probability: the sample reads as that class, not as a borderline case."""


def label_ambiguity(
    labels: np.ndarray,
    predicted: np.ndarray | None,
    probability: np.ndarray | None,
    flagged: np.ndarray,
    class_names: Sequence[str],
    *,
    out_of_sample: bool,
    features_saw_labels: bool = False,
    rule_flags_disagreement: bool = True,
    trusted_floor: dict[str, Any] | None = None,
    noisy: bool = False,
) -> dict[str, Any] | None:
    """The ``findings.label_ambiguity`` entry of ``report.json``; ``None`` without predictions.

    Parameters
    ----------
    labels : ndarray of int
        Given class codes.
    predicted : ndarray of int or None
        Predicted class codes, ``-1`` where there is no prediction.
    probability : ndarray of float or None
        The model's probability of its predicted class (``NaN`` where unknown).
    flagged : ndarray of bool
    class_names : sequence of str
    out_of_sample : bool
        Whether ``predicted`` comes from a model that never saw the sample.
    features_saw_labels : bool
        Whether that model read features of a model trained on every sample with its label
        (the heads on an image model's features): the statement then says that the share may
        understate the ambiguity.
    rule_flags_disagreement : bool
        Whether the label-noise rule reads this disagreement. On texts without a trusted
        sample it does not: it reads heads on the features of a text model trained on every
        label, which agree with the labels it memorised, flipped or not (on every real corpus
        of the benchmarks), and the heads on the words, which read these predictions, cannot
        tell random flips from a corpus's own ambiguity by the share (docs/benchmarks.md).
        Unless the scan called label noise (``noisy``), the statement then says that flips
        can be missed instead of promising a pattern test. With a trusted sample the rule
        reads the words (``trusted_floor``).
    trusted_floor : dict or None
        Texts scanned with a trusted sample: their confident disagreement against the trusted
        texts' (:attr:`~poisonguard.results.ScanResult.label_floor`); the statement compares
        the two and says whether the scan called label noise (``noisy``).
    noisy : bool
        Whether the scan called label noise.

    Returns
    -------
    dict or None
        ``predicted_by`` (``"out-of-sample"`` or ``"embedding-model"``), ``samples`` (with a
        prediction), ``disagreeing`` and ``fraction`` (predicted as another class),
        ``confident`` and ``confident_fraction`` (of those, at probability >= :data:`CONFIDENT`),
        ``unflagged_fraction`` (the share among the unflagged samples with a prediction),
        ``per_class`` (``class``, ``samples``, ``fraction``, largest first) and ``statement``, the
        page's sentence.
    """
    if predicted is None:
        return None
    labels = np.asarray(labels).reshape(-1)
    predicted = np.asarray(predicted).reshape(-1)
    flagged = np.asarray(flagged, dtype=bool).reshape(-1)
    known = predicted >= 0
    disagree = known & (predicted != labels)
    if probability is None:
        sure = np.zeros_like(disagree)
    else:
        top = np.asarray(probability, dtype=np.float64).reshape(-1)
        sure = disagree & (np.nan_to_num(top, nan=0.0) >= CONFIDENT)
    samples = int(known.sum())
    per_class = []
    for code, name in enumerate(class_names):
        mine = known & (labels == code)
        if mine.any():
            per_class.append(
                {
                    "class": name,
                    "samples": int(mine.sum()),
                    "fraction": float(disagree[mine].mean()),
                }
            )
    per_class.sort(key=lambda c: (-c["fraction"], c["class"]))
    unflagged = known & ~flagged
    entry: dict[str, Any] = {
        "predicted_by": "out-of-sample" if out_of_sample else "embedding-model",
        "samples": samples,
        "disagreeing": int(disagree.sum()),
        "fraction": float(disagree.sum() / samples) if samples else 0.0,
        "confident": int(sure.sum()),
        "confident_fraction": float(sure.sum() / samples) if samples else 0.0,
        "unflagged_fraction": float(disagree[unflagged].mean()) if unflagged.any() else 0.0,
        "per_class": per_class,
        "features_saw_labels": bool(features_saw_labels),
        "rule_flags_disagreement": bool(rule_flags_disagreement),
        "trusted_floor": None if trusted_floor is None else dict(trusted_floor),
    }
    entry["statement"] = _statement(entry, noisy)
    return entry


def _statement(entry: dict[str, Any], noisy: bool = False) -> str:
    if not entry["samples"]:
        return "No sample has a prediction, so how ambiguous the labels look is unknown."
    share = f"{100 * entry['fraction']:.1f} %"
    if entry["predicted_by"] != "out-of-sample":
        return (
            f"The embedding model, which trained on every label, predicts another class for "
            f"{share} of the samples; this understates how ambiguous the labels are (run the "
            "confident-learning detector for out-of-sample predictions)."
        )
    worst = entry["per_class"][0]
    who = "A model that never saw them"
    if entry["features_saw_labels"]:
        who = (
            "Linear heads that never saw them, reading features of the model trained on every "
            "label (which may have memorised some, so the share can understate the ambiguity),"
        )
    verb = "predict" if entry["features_saw_labels"] else "predicts"
    if not entry["disagreeing"]:
        return f"{who} {verb} the given class for every sample."
    found = (
        f"{who} {verb} another class than the given one for {share} of the samples "
        f"({100 * entry['confident_fraction']:.1f} % at {100 * CONFIDENT:.0f} % confidence or "
        f"more; most in class {worst['class']!r}, {100 * worst['fraction']:.1f} %)."
    )
    floor = entry["trusted_floor"]
    if floor is not None and floor["samples"] and floor["trusted_samples"]:
        scanned = 100 * floor["disagreeing"] / floor["samples"]
        trusted = 100 * floor["trusted_disagreeing"] / floor["trusted_samples"]
        verdict = (
            "more than the corpus's own ambiguity explains: the label-noise rule flags the "
            "samples more likely mislabelled than not"
            if noisy
            else "within what the trusted texts show, so it is not flagged"
        )
        return (
            f"{found} As surely as their classes' own samples on average, the same model reads "
            f"{scanned:.1f} % of the scanned samples as another class and {trusted:.1f} % of "
            f"the trusted ones (z {floor['z']:.1f}): {verdict}."
        )
    if not entry["rule_flags_disagreement"] and not noisy:
        return (
            f"{found} That is the labels' ambiguity, the model's own error and any flipped "
            "labels together: without a trusted clean sample (--trusted) the label-noise rule "
            "reads a text model trained on every label, which memorises flipped ones, so it "
            "can miss them; review the texts read as another class yourself, highest score "
            "first."
        )
    return (
        f"{found} That is the labels' ambiguity plus the model's own error, not evidence of "
        "poisoning on its own: the label-noise rule flags disagreement only where it forms a "
        "pattern."
    )
