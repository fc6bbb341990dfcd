"""Plain containers passed between the pipeline's stages (embedding -> detectors -> report)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poisonguard.dataset import Dataset

__all__ = ["Embedding", "ClassFinding", "RuleOff", "ScanResult"]


@dataclass
class Embedding:
    """What the embedding model learned about each sample.

    Attributes
    ----------
    features : ndarray or ArrayFile, shape (N, F), float32
        Penultimate-layer activations (the representation detectors work on). On an out-of-core
        scan (``--chunk-rows``) a :class:`~poisonguard.ondisk.ArrayFile`: the rows stay in
        the cache file and are read a block or a class at a time.
    probabilities : ndarray, shape (N, K), float32
        Class probabilities of the trained model for each sample (in-sample).
    loss : ndarray, shape (N, E), float32
        Cross-entropy loss of each sample at each of the ``E`` training epochs, recorded when the
        sample was seen in that epoch (before the update).
    margin : ndarray, shape (N, E), float32
        Logit of the given label minus the largest other logit, per epoch (Pleiss et al., 2020).
    gradient_sq : ndarray, shape (N, E), float32
        Squared norm of the sample's loss gradient with respect to the last layer's weights and
        bias, per epoch (TracIn's last-layer term, Pruthi et al., 2020).
    model : dict
        JSON-able description: source (``"trained"`` or ``"torchscript"``), architecture, recipe.
    input_shape : tuple of int
        Shape of one model input, e.g. ``(1, 28, 28)`` or ``(30,)``.
    train_accuracy : float
        Share of samples whose given label is the model's top prediction after training.
    fingerprint : str
        sha256 of the data and the model settings; the cache key.
    from_cache : bool
        True when the embedding was read from the cache instead of computed.
    cache_path : Path or None
    weights : dict of str to ndarray
        The trained parameters (``state_dict`` of the trained model, or of the linear head over a
        user's extractor) and the input scaling (``scaler.mean``, ``scaler.std``), so that
        other data (a trusted set) can be embedded by the same model.
    stage_seconds : dict of str to float
        Wall time of the stages computed in this run (``"train"``, ``"inference"``); empty when
        the embedding came from the cache. Not cached.
    """

    features: np.ndarray
    probabilities: np.ndarray
    loss: np.ndarray
    margin: np.ndarray
    gradient_sq: np.ndarray
    model: dict[str, Any]
    input_shape: tuple[int, ...]
    train_accuracy: float
    fingerprint: str
    from_cache: bool = False
    cache_path: Path | None = None
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class ClassFinding:
    """The scan's finding for one class.

    ``verdict`` is ``"backdoor-target"`` (a group of suspected backdoor poisons was found in it),
    ``"noisy-labels"`` (samples labelled with it look like other classes, and the labels were
    judged noisy), ``"clean"`` (nothing found, and every rule ran), ``"not-cleared"`` (nothing
    found, but a rule did not run: see :class:`RuleOff`) or ``"skipped"`` (too small for the
    detectors); ``reason`` says why in plain words; ``evidence`` names the test that carried
    the verdict (``"separated-group"``, ``"mixed-origin-group"``, ``"label-noise-spread"`` or
    ``""``). ``trigger_words`` holds, for a class called by the trigger-words test (texts), the
    core words of each trigger found (lower-cased tokens, as the model reads them), which
    ``poisonguard sanitize --action repair`` takes out of the flagged texts.
    """

    code: int
    name: str
    count: int
    flagged: int
    verdict: str
    reason: str
    evidence: str = ""
    trigger_words: list[list[str]] = field(default_factory=list)


@dataclass(frozen=True)
class RuleOff:
    """A flagging rule that did not run because the detector it needs was not selected.

    ``rule`` is ``"backdoor"`` (the separated-group and mixed-origin tests) or
    ``"label-noise"``; ``detector`` names the detector the rule needs and ``needs`` what it
    takes from it; ``summary`` is a short phrase for a summary line ("the backdoor tests did
    not run (spectre not selected)") and ``message`` the full warning.
    """

    rule: str
    detector: str
    needs: str
    summary: str
    message: str


@dataclass
class ScanResult:
    """Everything a report needs about one scan.

    ``detector_scores`` maps each detector's name to its raw per-sample scores (higher = more
    suspicious, not comparable across detectors). ``score`` is the fused suspicion in [0, 1]
    (flagged samples score at least ``threshold``); ``flagged`` is the decision; ``reasons`` a
    plain-words reason per flagged sample ("" otherwise); ``fired`` maps each detector to the
    samples on which it fired (robust z above 3 in their class); ``target_classes`` names the
    suspected backdoor targets and ``attack_kinds`` lists ``"backdoor"`` and/or
    ``"label-noise"``. ``finding`` gives, per sample, ``"backdoor"``, ``"label-noise"`` or ``""``
    (not flagged); ``predicted`` the class code a model predicts for each sample: out of sample
    (cross-validated heads; for texts on their words, :mod:`~poisonguard.detectors.text_columns`)
    when the ``confident-learning`` detector ran, else the embedding
    model's own prediction, and ``predicted_probability`` that model's probability of it.
    ``poisonguard sanitize --action relabel`` uses both. ``execution`` says where the work ran
    (``tasks``: in this process or on which Dask cluster) and where the features were
    (``features``: in memory or in a file); neither changes a score. Its ``torch_threads``, the
    torch threads the embedding model trained on, does. ``rules_off`` lists the
    flagging rules that did not run because the detector they need was not selected: a scan
    that flags nothing has then not ruled that attack out. ``label_floor`` (texts scanned with a
    trusted sample): the texts' confident disagreement with their labels against the trusted
    texts' (``disagreeing``, ``samples``, ``trusted_disagreeing``, ``trusted_samples``, ``z``,
    ``p_value``); ``None`` otherwise.
    """

    dataset: Dataset
    embedding: Embedding
    detector_scores: dict[str, np.ndarray]
    score: np.ndarray
    flagged: np.ndarray
    threshold: float
    class_findings: list[ClassFinding]
    settings: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    fired: dict[str, np.ndarray] = field(default_factory=dict)
    target_classes: list[str] = field(default_factory=list)
    attack_kinds: list[str] = field(default_factory=list)
    finding: np.ndarray | None = None
    predicted: np.ndarray | None = None
    predicted_probability: np.ndarray | None = None
    execution: dict[str, Any] = field(default_factory=dict)
    rules_off: list[RuleOff] = field(default_factory=list)
    label_floor: dict[str, Any] | None = None

    @property
    def n_flagged(self) -> int:
        return int(np.count_nonzero(self.flagged))
