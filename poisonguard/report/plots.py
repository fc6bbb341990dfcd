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
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogFormatter

__all__ = ["score_histogram_png", "embedding_map_png", "map_draw_order", "roc_curves_png"]

_SIZE_INCHES = (8.0, 5.0)
_DPI = 100
_CLEAN_COLOR = "#4c78a8"
_FLAGGED_COLOR = "#e45756"
_THRESHOLD_COLOR = "#333333"
_HIST_BINS = 60
_MAX_LEGEND_CLASSES = 30
_MAX_LABEL_CHARS = 32
_MAX_SHADED_CLASSES = 40  # each class's cloud is tinted and outlined up to this many classes
_SHADE_GRID = (200, 125)  # histogram cells across and up the map
_SHADE_SMOOTHING = 2.0  # Gaussian smoothing of the histogram, in cells
_SHADE_LEVEL = 0.05  # a class's region: where its smoothed density exceeds this share of its peak


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
    """The 2-D map: each class's cloud in its colour, flagged samples on top in their given
    label's colour.

    Layers, bottom to top: each class's unflagged samples as a tinted, outlined region (a
    smoothed density of its points, for at most 40 classes) and as small faint dots; then every
    flagged sample, small, black-edged, filled with the colour of its *given* label. So a flagged
    sample whose colour differs from the cloud it sits in is one whose label disagrees with its
    neighbours (a label flip), and a tight group of one colour inside another class's cloud is a
    backdoor's poisons (the target's colour on the source class). Within each layer the order is
    shuffled (fixed seed), so no class is always on top.

    Parameters
    ----------
    coords : ndarray, shape (n, 2)
        Map coordinates of the drawn samples.
    labels : ndarray of int, shape (n,)
        Given class codes of those samples (into ``class_names``).
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
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    flagged = np.asarray(flagged, dtype=bool).reshape(-1)
    fig, ax = _new_figure()
    if coords.shape[0] == 0:
        _empty(ax, "no samples to draw")
        return _png(fig)

    n_classes = len(class_names)
    colors = np.asarray(_class_colors(n_classes), dtype=np.float64).reshape(-1, 4)
    unflagged_order, flagged_order = map_draw_order(flagged)
    low, high = coords.min(axis=0), coords.max(axis=0)
    pad = 0.05 * (high - low) + 1e-6
    low, high = low - pad, high + pad
    if n_classes <= _MAX_SHADED_CLASSES:
        _shade_classes(ax, coords[unflagged_order], labels[unflagged_order], colors, low, high)
    ax.scatter(
        coords[unflagged_order, 0],
        coords[unflagged_order, 1],
        s=5 if unflagged_order.size <= 2000 else 3,
        c=colors[labels[unflagged_order]],
        alpha=0.4,
        linewidths=0,
        zorder=1,
    )
    n_flagged = flagged_order.size
    ax.scatter(
        coords[flagged_order, 0],
        coords[flagged_order, 1],
        s=24 if n_flagged <= 300 else 12 if n_flagged <= 1500 else 8,
        c=colors[labels[flagged_order]],
        edgecolors="black",
        linewidths=0.5 if n_flagged <= 300 else 0.3,
        zorder=3,
    )
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title("Embedding map (UMAP)")
    marks = [
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=3,
            markerfacecolor="#777777",
            markeredgewidth=0,
            alpha=0.6,
            label=f"not flagged ({unflagged_order.size})",
        ),
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=6,
            markerfacecolor="#bbbbbb",
            markeredgecolor="black",
            markeredgewidth=0.8,
            label=f"flagged ({n_flagged}),\nin its given label's colour",
        ),
    ]
    if n_classes <= _MAX_LEGEND_CLASSES:
        present = np.unique(labels)
        handles = [
            Patch(
                facecolor=colors[code],
                edgecolor=colors[code],
                label=_legend_text(int(code), class_names[int(code)]),
            )
            for code in present
            if 0 <= code < n_classes
        ]
        ax.legend(
            handles=handles + marks,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize="small",
            ncols=1 if n_classes <= 15 else 2,
            frameon=False,
        )
    else:
        ax.legend(
            handles=marks,
            title=f"{n_classes} classes\n(class legend left out)",
            title_fontsize="small",
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize="small",
            frameon=False,
        )
    return _png(fig)


def map_draw_order(flagged: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The order :func:`embedding_map_png` draws points in: the unflagged ones, then the flagged.

    Returns the unflagged and the flagged indices, each in a random order (``seed``), so that
    within a layer no class is always drawn over the others.
    """
    flagged = np.asarray(flagged, dtype=bool).reshape(-1)
    rng = np.random.default_rng(seed)
    return rng.permutation(np.flatnonzero(~flagged)), rng.permutation(np.flatnonzero(flagged))


def _shade_classes(ax, coords, labels, colors, low, high) -> None:
    """Tint and outline where each class's (unflagged) points lie: a smoothed 2-D histogram
    cut at :data:`_SHADE_LEVEL` of its peak. Classes with fewer than 5 points are left out."""
    from scipy.ndimage import gaussian_filter

    bins = (_SHADE_GRID[0], _SHADE_GRID[1])
    extent = [[low[0], high[0]], [low[1], high[1]]]
    for code in np.unique(labels):
        members = labels == code
        if members.sum() < 5 or not 0 <= code < len(colors):
            continue
        density, x_edges, y_edges = np.histogram2d(
            coords[members, 0], coords[members, 1], bins=bins, range=extent
        )
        density = gaussian_filter(density, _SHADE_SMOOTHING)
        if density.max() <= 0:
            continue
        density /= density.max()
        x = (x_edges[:-1] + x_edges[1:]) / 2
        y = (y_edges[:-1] + y_edges[1:]) / 2
        color = [colors[code]]
        ax.contourf(
            x, y, density.T, levels=[_SHADE_LEVEL, 1.01], colors=color, alpha=0.15, zorder=0
        )
        ax.contour(
            x,
            y,
            density.T,
            levels=[_SHADE_LEVEL],
            colors=color,
            alpha=0.6,
            linewidths=0.8,
            zorder=0,
        )


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
