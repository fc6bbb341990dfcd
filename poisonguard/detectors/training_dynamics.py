"""Scores from per-sample training dynamics: how a sample's margin and loss evolved while the
embedding model trained on it (recorded by :func:`poisonguard.embed.training.train_with_dynamics`).

* Area under the margin (Pleiss, Zhang, Elenberg & Weinberger, "Identifying Mislabeled Data
  using the Area Under the Margin Ranking", NeurIPS 2020). A correctly labelled sample is pushed
  towards its label by the gradients of its whole class, so its margin (logit of the given label
  minus the largest other logit) grows early; a mislabelled one is pulled the other way by the
  samples of its true class and keeps a small or negative margin until the network memorises it.
* Early loss (Li, Lyu, Koren, Lyu, Li & Ma, "Anti-Backdoor Learning: Training Clean Models on
  Poisoned Data", NeurIPS 2021). A backdoor trigger is a simpler feature than the content of the
  target class, so poisoned samples reach a low loss in the first epochs, faster than clean ones.

Limits: both need the records of a model trained from scratch on the audited data (a frozen user
model has none). AUM's separation fades as training runs long enough to memorise the flipped
labels, which is why it averages over all epochs rather than reading the last. Early loss is
one-sided: on small images with tiny triggers the trigger can be learned *later* than the clean
content (measured on 8x8 digits with a 2x2 patch), and then the poisoned samples have the
*higher* early loss, which this score ranks as least suspicious. Mislabelled samples also have a
high early loss, so early loss alone cannot tell a slow-learned trigger from label noise.
"""

from __future__ import annotations

import numpy as np

__all__ = ["area_under_margin_scores", "early_loss_scores"]


def area_under_margin_scores(margin: np.ndarray) -> np.ndarray:
    """Negated area under the margin: ``-mean_e margin[:, e]``; higher = more suspicious.

    Parameters
    ----------
    margin : ndarray, shape (N, E)
        Per-sample, per-epoch margin: logit of the given label minus the largest other logit,
        recorded when the sample was seen in that epoch. A 1-D array is read as one epoch.

    Returns
    -------
    ndarray of float64, shape (N,)
        Positive when the given label lost to another class on average over training. The paper
        calibrates a flagging threshold with deliberately mislabelled "threshold samples" added
        to a retraining run; PoisonGuard does not retrain, so only the ranking is used.
    """
    margin = _check_records(margin, "margin")
    return -margin.mean(axis=1)


def early_loss_scores(loss: np.ndarray, *, early_fraction: float = 0.2) -> np.ndarray:
    """Negated mean training loss over the first epochs; higher = more suspicious.

    The first ``max(1, round(early_fraction * E))`` epochs are averaged (Python's ``round``:
    halves go to the even number), so 5 epochs use the first, 40 epochs the first 8.

    One-sided: it ranks samples learned *unusually fast* (a backdoor trigger learned before the
    clean content) as suspicious. When the trigger is learned more slowly than the clean content
    (tiny triggers on small images; measured on 8x8 digits with a 2x2 patch) the poisoned samples
    score *lowest*; they are then found by their high loss, i.e. by ``-early_loss_scores``,
    together with every mislabelled and hard sample. Use it beside, not instead of, the other
    detectors.

    Parameters
    ----------
    loss : ndarray, shape (N, E)
        Per-sample, per-epoch training loss (cross-entropy with the given label). A 1-D array is
        read as one epoch.
    early_fraction : float
        Share of the epochs, in ``(0, 1]``, counted as early.

    Returns
    -------
    ndarray of float64, shape (N,)
        At most 0 for a non-negative loss.
    """
    if not 0.0 < early_fraction <= 1.0:
        raise ValueError(f"early_fraction must be in (0, 1], got {early_fraction}")
    loss = _check_records(loss, "loss")
    n_epochs = loss.shape[1]
    n_early = min(n_epochs, max(1, round(early_fraction * n_epochs)))
    return -loss[:, :n_early].mean(axis=1)


def _check_records(records: np.ndarray, name: str) -> np.ndarray:
    """Float64 ``(N, E)`` with ``E >= 1`` and only finite values, else ``ValueError``."""
    records = np.asarray(records, dtype=np.float64)
    if records.ndim == 1:
        records = records[:, None]
    if records.ndim != 2 or records.shape[1] == 0:
        raise ValueError(f"{name} must have shape (N, E) with E >= 1, got {records.shape}")
    if not np.isfinite(records).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return records
