"""The report's two figures, rendered off-screen to PNG bytes (matplotlib's Agg canvas).

Figures are built on :class:`matplotlib.figure.Figure` objects, never through ``pyplot``, so no
global state is touched and nothing needs a display.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

__all__ = ["score_histogram_png", "embedding_map_png", "roc_curves_png"]

_SIZE_INCHES = (8.0, 5.0)
_DPI = 100
_CLEAN_COLOR = "#4c78a8"
_FLAGGED_COLOR = "#e45756"
_THRESHOLD_COLOR = "#333333"
_HIST_BINS = 60
_MAX_LEGEND_CLASSES = 30
_MAX_LABEL_CHARS = 32


def score_histogram_png(score: np.ndarray, flagged: np.ndarray, threshold: float) -> bytes:
    """Histogram of the fused suspicion score, flagged samples stacked in another colour.

    Parameters
    ----------
    score : ndarray, shape (N,)
        Calibrated suspicion per sample (higher = more suspicious). Non-finite values are left
        out.
    flagged : ndarray of bool, shape (N,)
    threshold : float
        The flagging rule's threshold, drawn as a vertical line when finite.

    Returns
    -------
    bytes
        An 800 x 500 px PNG; the y axis (sample count) is logarithmic.
    """
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    flagged = np.asarray(flagged, dtype=bool).reshape(-1)
    finite = np.isfinite(score)
    fig, ax = _new_figure()
    if not finite.any():
        _empty(ax, "no finite scores")
        return _png(fig)

    edges = np.histogram_bin_edges(score[finite], bins=_HIST_BINS)
    clean_counts, _ = np.histogram(score[finite & ~flagged], bins=edges)
    flagged_counts, _ = np.histogram(score[finite & flagged], bins=edges)
    widths = np.diff(edges)
    ax.bar(
        edges[:-1],
        clean_counts,
        width=widths,
        align="edge",
        color=_CLEAN_COLOR,
        label=f"not flagged ({int(clean_counts.sum())})",
    )
    ax.bar(
        edges[:-1],
        flagged_counts,
        width=widths,
        bottom=clean_counts,
        align="edge",
        color=_FLAGGED_COLOR,
        label=f"flagged ({int(flagged_counts.sum())})",
    )
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(
            float(threshold),
            color=_THRESHOLD_COLOR,
            linestyle="--",
            linewidth=1.2,
            label=f"threshold {float(threshold):.4g}",
        )
    ax.set_yscale("log", nonpositive="clip")
    peak = int((clean_counts + flagged_counts).max())
    ax.set_ylim(0.7, max(2.0, peak * 1.6))
    # Plain counts ("6", "1000") instead of "6 x 10^0"; minor ticks labelled on short ranges only.
    ax.yaxis.set_major_formatter(LogFormatter(base=10, labelOnlyBase=False))
    ax.yaxis.set_minor_formatter(
        LogFormatter(base=10, labelOnlyBase=False, minor_thresholds=(1.5, 0.5))
    )
    ax.set_xlabel("suspicion score (higher = more suspicious)")
    ax.set_ylabel("samples (log scale)")
    ax.set_title("Score distribution")
    ax.legend(loc="upper right", fontsize="small")
    return _png(fig)


def embedding_map_png(
    coords: np.ndarray,
    labels: np.ndarray,
    flagged: np.ndarray,
    class_names: Sequence[str],
) -> bytes:
    """Scatter plot of the 2-D map, coloured by class, flagged samples marked with a black ``x``.

    Parameters
    ----------
    coords : ndarray, shape (n, 2)
        Map coordinates of the drawn samples.
    labels : ndarray of int, shape (n,)
        Class codes of those samples (into ``class_names``).
    flagged : ndarray of bool, shape (n,)
    class_names : sequence of str
        Names shown in the legend (untrusted text: shown literally, shortened if long). The
        legend is left out for more than 30 classes.

    Returns
    -------
    bytes
        An 800 x 500 px PNG.
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(labels).reshape(-1)
    flagged = np.asarray(flagged, dtype=bool).reshape(-1)
    fig, ax = _new_figure()
    if coords.shape[0] == 0:
        _empty(ax, "no samples to draw")
        return _png(fig)

    n_classes = len(class_names)
    colors = _class_colors(n_classes)
    size = 14 if coords.shape[0] <= 1000 else 6
    for code in range(n_classes):
        members = labels == code
        if members.any():
            ax.scatter(
                coords[members, 0],
                coords[members, 1],
                s=size,
                alpha=0.75,
                linewidths=0,
                color=colors[code],
                label=_legend_text(code, class_names[code]),
            )
    if flagged.any():
        ax.scatter(
            coords[flagged, 0],
            coords[flagged, 1],
            marker="x",
            s=28 if flagged.sum() <= 300 else 8,  # many large crosses hide the map
            linewidths=1.0 if flagged.sum() <= 300 else 0.6,
            color="black",
            label=f"flagged ({int(flagged.sum())})",
            zorder=3,
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("Embedding map (UMAP)")
    if n_classes <= _MAX_LEGEND_CLASSES:
        ax.legend(
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize="small",
            markerscale=2.0,
            ncols=1 if n_classes <= 15 else 2,
            frameon=False,
        )
    else:
        ax.text(
            1.01,
            1.0,
            f"{n_classes} classes\n(legend left out)\nx = flagged",
            transform=ax.transAxes,
            va="top",
            fontsize="small",
        )
    return _png(fig)


def roc_curves_png(curves: dict[str, tuple[Sequence[float], Sequence[float]]]) -> bytes:
    """ROC curves of membership-inference attacks on log-log axes (the low-FPR end matters).

    ``curves`` maps an attack name to its ``(fpr, tpr)`` points; the diagonal is a guessing
    attacker. Zero rates are drawn at the axes' lower limit.
    """
    fig, ax = _new_figure()
    if not curves:
        _empty(ax, "no ROC curve")
        return _png(fig)
    floor = 1e-4
    for name, (fpr, tpr) in curves.items():
        fpr = np.maximum(np.asarray(fpr, dtype=np.float64), floor)
        tpr = np.maximum(np.asarray(tpr, dtype=np.float64), floor)
        ax.plot(fpr, tpr, label=name, linewidth=1.6)
    line = np.logspace(np.log10(floor), 0, 50)
    ax.plot(line, line, linestyle="--", color=_THRESHOLD_COLOR, linewidth=1, label="guessing")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("false positive rate (non-members called members)")
    ax.set_ylabel("true positive rate (members found)")
    ax.set_title("Membership inference ROC (log scale)")
    ax.legend(loc="lower right", fontsize="small")
    return _png(fig)


def _new_figure():
    fig = Figure(figsize=_SIZE_INCHES, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    # No "Software" text chunk: smaller files, and no outside URL inside the report.
    fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _empty(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _class_colors(n: int) -> list:
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    cmap = colormaps["turbo"]
    return [cmap(i / max(1, n - 1)) for i in range(n)]


def _legend_text(code: int, name: str) -> str:
    """Legend entry for a class, safe for matplotlib.

    Class names are untrusted: ``$`` would switch on mathtext (and a bad formula makes saving
    fail), and a label starting with ``_`` is hidden from the legend. The ``code:`` prefix avoids
    the latter; ``$`` is escaped.
    """
    text = str(name)
    if len(text) > _MAX_LABEL_CHARS:
        text = text[: _MAX_LABEL_CHARS - 1] + "…"
    text = text.replace("$", r"\$")
    return f"{code}: {text}"
