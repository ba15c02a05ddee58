"""Figures of a run's weighting, drawn with matplotlib's Agg backend (no display needed).

Each function returns a `matplotlib.figure.Figure`; `to_png` renders and closes it;
`mwnet_tf.plot` writes them to PNG files. The trainer's per-epoch TensorBoard images are
`EpochFigures`: each of its figures (`WeightFunctionFigure`, `WeightHistogramFigure`,
`ConfusionFigure`) and their artists are built once and drawn again with each epoch's data
(its layout fixed when it is built), the same picture as a figure built for that data alone
(`weight_function`, `weight_histograms`, `confusion_matrix` build one and draw it once).
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.transforms  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

CLEAN, CORRUPTED = "tab:blue", "tab:red"
DPI = 80  # of the PNG files and TensorBoard images
# The layout of the per-epoch figures is fixed when they are built, for the widest tick labels
# they show: counts of tracked samples up to 4 digits (diagnostics.TRACKED is 2,000).
_WIDEST_COUNT = 2000


def to_png(fig) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _figure(**kw) -> Figure:
    """A figure outside pyplot's state machine, on its own Agg canvas, at `DPI`."""
    fig = Figure(dpi=DPI, **kw)
    FigureCanvasAgg(fig)
    return fig


def to_rgba(fig) -> np.ndarray:
    """The figure drawn at its dpi: uint8 [height, width, 4] RGBA, the pixels `to_png` encodes
    (a copy, valid after the figure is drawn again)."""
    fig.canvas.draw()
    return np.array(fig.canvas.buffer_rgba())


def _bars(ax, hist: dict, label: str) -> None:
    edges = np.asarray(hist["bins"])
    width = np.diff(edges)
    clean, bad = np.asarray(hist["clean"]), np.asarray(hist["corrupted"])
    ax.bar(edges[:-1], clean, width, align="edge", color=CLEAN, alpha=0.8, label="clean")
    if bad.sum():
        ax.bar(edges[:-1], bad, width, align="edge", bottom=clean, color=CORRUPTED, alpha=0.8,
               label="corrupted")
    ax.set_xlabel(label)
    ax.set_ylabel("tracked samples")
    ax.legend(loc="upper right", fontsize="small")


def _shape(hist: dict) -> tuple[int, bool]:
    """What the artists of a histogram depend on: its number of bins, corrupted bars or not."""
    return len(hist["bins"]) - 1, bool(np.sum(hist["corrupted"]))


class _StackedBars:
    """`_bars` of a histogram of `bins` bins (with corrupted bars stacked on the clean ones
    when `corrupted`), whose heights and edges `set` changes."""

    def __init__(self, ax, bins: int, corrupted: bool, label: str):
        zeros, ones = np.zeros(bins), np.ones(bins)
        self.clean = ax.bar(np.arange(bins), zeros, ones, align="edge", color=CLEAN, alpha=0.8,
                            label="clean").patches
        self.corrupted = (ax.bar(np.arange(bins), zeros, ones, align="edge", bottom=zeros,
                                 color=CORRUPTED, alpha=0.8, label="corrupted").patches
                          if corrupted else [])
        ax.set_xlabel(label)
        ax.set_ylabel("tracked samples")
        ax.legend(loc="upper right", fontsize="small")

    def set(self, hist: dict) -> np.ndarray:
        """New heights and edges; returns the bars' data limits [[x0, y0], [x1, y1]]."""
        edges = np.asarray(hist["bins"], np.float64)
        clean = np.asarray(hist["clean"], np.float64)
        stacks = [(self.clean, np.zeros_like(clean), clean)]
        if self.corrupted:
            stacks.append((self.corrupted, clean, np.asarray(hist["corrupted"], np.float64)))
        lefts, widths = edges[:-1], np.diff(edges)
        tops = []
        for patches, bottoms, heights in stacks:
            for r, left, width, b, h in zip(patches, lefts, widths, bottoms, heights):
                r.set_bounds(left, b, width, h)
                r.sticky_edges.y[:] = [b]  # as `ax.bar` sets them: autoscaling stops there
            tops.append(bottoms + heights)
        return np.array([[lefts.min(), 0.0], [(lefts + widths).max(), np.max(tops)]])


def _rescale(limits) -> None:
    """`limits` {axes: data limits [[x0, y0], [x1, y1]] of its artists' new data}: the data
    limits (what `Axes.relim` finds, without going through every patch's path) and the view
    limits from them (shared axes together), as a figure built with that data has them."""
    for ax, points in limits.items():
        ax.dataLim.set_points(np.asarray(points, np.float64))
        ax.ignore_existing_data_limits = False
    for ax in limits:
        ax.autoscale_view()


class WeightFunctionFigure:
    """`weight_function`'s figure for loss histograms of `bins` bins (`corrupted`: some
    corrupted samples) and `groups` functions of class groups besides the mean one (CMW-Net;
    0: one function), drawn again by `draw` with each epoch's data."""

    def __init__(self, bins: int, corrupted: bool, groups: int = 0):
        self.key = (bins, corrupted, groups)
        self.fig = _figure(figsize=(6, 5))
        self.top, self.bottom = self.fig.subplots(2, 1, sharex=True,
                                                  gridspec_kw={"height_ratios": [3, 2]})
        self.group_lines = [self.top.plot([0.0, 1.0], [0.0, 1.0])[0] for _ in range(groups)]
        self.line, = self.top.plot([0.0, 1.0], [0.0, 1.0], color="black",
                                   linestyle="--" if groups else "-")
        self.top.set_ylabel("weight")
        self.top.grid(alpha=0.3)
        self.bars = _StackedBars(self.bottom, bins, corrupted, "training loss")
        # the layout, once, for the widest tick labels
        self.top.set_title("weight function, epoch 000", y=1.0)
        self.top.set_ylim(0, 1)
        self.bottom.set_ylim(0, _WIDEST_COUNT)
        self.fig.tight_layout()
        self.bottom.set_autoscaley_on(True)

    def draw(self, grid, weights, loss_histogram: dict, title: str,
             groups: dict | None = None) -> Figure:
        """The figure with this data (drawn by `to_rgba` or `to_png`); `groups` {label:
        weights on the grid}, one line each (as many as the figure was built for)."""
        x, y = np.asarray(grid, np.float64), np.asarray(weights, np.float64)
        self.line.set_data(x, y)
        top = float(np.max(weights))
        if self.group_lines:
            for line, (label, w) in zip(self.group_lines, (groups or {}).items()):
                line.set_data(x, np.asarray(w, np.float64))
                line.set_label(label)
                top = max(top, float(np.max(w)))
            self.line.set_label("mean over the training samples")
            self.top.legend(loc="upper right", fontsize=7)
        self.top.set_ylim(0, max(1.0, top * 1.05))
        self.top.title.set_text(title)
        _rescale({self.top: [[x.min(), y.min()], [x.max(), y.max()]],
                  self.bottom: self.bars.set(loss_histogram)})
        return self.fig


class WeightHistogramFigure:
    """`weight_histograms`' figure for histograms of `bins` bins, drawn again by `draw`."""

    def __init__(self, bins: int, corrupted: bool):
        self.key = (bins, corrupted)
        self.fig = _figure(figsize=(6, 3.5))
        self.ax = self.fig.subplots()
        self.bars = _StackedBars(self.ax, bins, corrupted, "weight")
        self.ax.set_title("weights of tracked samples, epoch 000", y=1.0)
        self.ax.set_ylim(0, _WIDEST_COUNT)
        self.fig.tight_layout()
        self.ax.set_autoscaley_on(True)

    def draw(self, weight_histogram: dict, title: str) -> Figure:
        self.ax.title.set_text(title)
        _rescale({self.ax: self.bars.set(weight_histogram)})
        return self.fig


def weight_function(grid, weights, loss_histogram: dict, title: str,
                    groups: dict | None = None):
    """The weight function over the epoch's range of losses (CMW-Net: one per class group,
    `groups`, and their mean), the histogram of the tracked samples' losses (clean and
    corrupted stacked) beneath it."""
    return WeightFunctionFigure(*_shape(loss_histogram), len(groups or {})).draw(
        grid, weights, loss_histogram, title, groups)


def weight_histograms(weight_histogram: dict, title: str):
    """Weights of clean and of corrupted tracked samples (the paper's Fig. 5)."""
    return WeightHistogramFigure(*_shape(weight_histogram)).draw(weight_histogram, title)


def _normalized(matrix) -> np.ndarray:
    """A confusion matrix's rows divided by their sums (rows of zeros stay zeros)."""
    m = np.asarray(matrix, np.float64)
    rows = m.sum(1, keepdims=True)
    return np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)


def _cell_color(value: float) -> str:
    return "white" if value > 0.5 else "black"


def _confusion(ax, matrix, title: str):
    norm = _normalized(matrix)
    c = len(norm)
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if c <= 20:
        for i in range(c):
            for j in range(c):
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color=_cell_color(norm[i, j]))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(range(c))
    ax.set_yticks(range(c))
    ax.set_title(title, fontsize="medium")
    return image


def confusion_matrices(panels):
    """Test confusion matrices `(title, matrix)` side by side, rows normalized to the true
    class (the paper's Fig. 3)."""
    c = len(panels[0][1])
    size = 1.2 + 0.45 * c
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels) + 0.8, size),
                             squeeze=False)
    for ax, (title, matrix) in zip(axes[0], panels):
        image = _confusion(ax, matrix, title)
    fig.colorbar(image, ax=list(axes[0]), fraction=0.046 / len(panels))
    return fig


class ConfusionFigure:
    """`confusion_matrices`' figure of one panel for `classes` classes, drawn again by
    `draw` with each epoch's matrix; `render` draws only the cells whose value changed since
    its last call (and the title), the same pixels as drawing the whole figure."""

    def __init__(self, classes: int):
        self.key = classes
        size = 1.2 + 0.45 * classes
        self.fig = _figure(figsize=(size + 0.8, size))
        self.ax = self.fig.subplots()
        self.image = _confusion(self.ax, np.zeros((classes, classes)), "")
        # the title where matplotlib puts it above axes without ticks on top, once for all
        # (not found again each time through the tick labels' extents)
        self.ax.title.set_y(1.0)
        self.texts = self.ax.texts  # row by row, as `_confusion` adds them
        self.fig.colorbar(self.image, ax=[self.ax], fraction=0.046)
        self._shown = None  # the normalized matrix `render` drew last

    def draw(self, matrix, title: str) -> Figure:
        norm = _normalized(matrix)
        self.image.set_data(norm)
        for text, value in zip(self.texts, norm.ravel()):
            text.set_text(f"{value:.2f}")
            text.set_color(_cell_color(value))
        self.ax.title.set_text(title)
        return self.fig

    def _cells(self) -> None:
        """Which image pixels show which cell (-1: none), found by drawing the image once
        with a colour per cell; and the figure without its title."""
        c = self.key
        renderer = self.fig.canvas.get_renderer()
        buf = np.asarray(renderer.buffer_rgba())
        frame = buf.copy()
        cmap, norm, data = self.image.get_cmap(), self.image.norm, self.image.get_array()
        k = np.arange(c * c)
        self.image.set_cmap(matplotlib.colors.ListedColormap(
            np.stack([k % 256, k // 256, np.zeros_like(k)], 1) / 255.0))
        self.image.set_norm(matplotlib.colors.Normalize(-0.5, c * c - 0.5))
        self.image.set_data(k.reshape(c, c))
        buf[:] = 0
        self.image.draw(renderer)
        index = buf[..., 0].astype(np.int64) + 256 * buf[..., 1].astype(np.int64)
        self.cell_of_pixel = np.where(buf[..., 3] == 255, index, -1)
        self.image.set_cmap(cmap)
        self.image.set_norm(norm)
        self.image.set_data(data)
        self.boxes = []  # each cell's pixels: a rectangle [y0, y1) x [x0, x1)
        for cell in range(c * c):
            ys, xs = np.nonzero(self.cell_of_pixel == cell)
            self.boxes.append((ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) if len(ys)
                              else None)
        title = self.ax.title.get_text()
        self.ax.title.set_text("")
        self.untitled = to_rgba(self.fig)
        self.ax.title.set_text(title)
        buf[:] = frame

    def render(self, matrix, title: str) -> np.ndarray:
        """`to_rgba(self.draw(matrix, title))`, drawing only what changed since the last
        call: the image's pixels of the changed cells, their values and the title. Spines and
        tick marks over a changed cell at the border are drawn again over its pixels."""
        norm = _normalized(matrix)
        if self._shown is None:
            self.draw(matrix, title)
            to_rgba(self.fig)
            self._cells()
            self._shown = norm
            return to_rgba(self.fig)
        renderer = self.fig.canvas.get_renderer()
        buf = np.asarray(renderer.buffer_rgba())
        old_title = self.ax.title.get_window_extent(renderer)
        self.draw(matrix, title)
        changed = np.flatnonzero(norm.ravel() != self._shown.ravel())
        changed = [k for k in changed if self.boxes[k] is not None]
        if changed:
            before = buf.copy()
            self.image.draw(renderer)
            for k in changed:
                y0, y1, x0, x1 = self.boxes[k]
                before[y0:y1, x0:x1] = buf[y0:y1, x0:x1]
            buf[:] = before
            c = self.key
            # in drawing order; Agg clips paths to a box's edges and markers (the tick
            # marks) to the whole pixels in the box, its last row and column included
            lines = [(spine, 0) for spine in self.ax.spines.values()] + [
                (tick.tick1line, 1) for tick in self.ax.xaxis.get_major_ticks()
                + self.ax.yaxis.get_major_ticks()]
            h = buf.shape[0]
            for k in changed:
                if k // c in (0, c - 1) or k % c in (0, c - 1):  # spines, ticks over it
                    y0, y1, x0, x1 = self.boxes[k]
                    for line, inclusive in lines:
                        box, on = line.get_clip_box(), line.get_clip_on()
                        line.set_clip_box(matplotlib.transforms.Bbox(
                            [[x0, h - y1 + inclusive], [x1 - inclusive, h - y0]]))
                        line.set_clip_on(True)
                        line.draw(renderer)
                        line.set_clip_box(box)
                        line.set_clip_on(on)
                if self.texts:
                    self.texts[k].draw(renderer)
        new_title = self.ax.title.get_window_extent(renderer)
        box = matplotlib.transforms.Bbox.union([old_title, new_title]).padded(2)
        h, w = buf.shape[:2]
        y0, y1 = max(0, int(h - box.y1)), min(h, int(np.ceil(h - box.y0)))
        x0, x1 = max(0, int(box.x0)), min(w, int(np.ceil(box.x1)))
        buf[y0:y1, x0:x1] = self.untitled[y0:y1, x0:x1]
        self.ax.title.draw(renderer)
        self._shown = norm
        return buf.copy()


def confusion_matrix(matrix, title: str):
    """One test confusion matrix (`confusion_matrices` with one panel)."""
    return ConfusionFigure(len(matrix)).draw(matrix, title)


class EpochFigures:
    """The trainer's per-epoch figures as RGBA arrays (`to_rgba`), each figure built once and
    drawn again with each epoch's data (built anew only when the shape of its data changes:
    another number of bins or classes, corrupted samples or none)."""

    def __init__(self):
        self._figures: dict[str, object] = {}

    def _get(self, kind, key):
        fig = self._figures.get(kind.__name__)
        if fig is None or fig.key != key:
            fig = self._figures[kind.__name__] = kind(*key) if isinstance(key, tuple) \
                else kind(key)
        return fig

    def weight_function(self, grid, weights, loss_histogram: dict, title: str,
                        groups: dict | None = None) -> np.ndarray:
        fig = self._get(WeightFunctionFigure, (*_shape(loss_histogram), len(groups or {})))
        return to_rgba(fig.draw(grid, weights, loss_histogram, title, groups))

    def weight_histograms(self, weight_histogram: dict, title: str) -> np.ndarray:
        fig = self._get(WeightHistogramFigure, _shape(weight_histogram))
        return to_rgba(fig.draw(weight_histogram, title))

    def confusion_matrix(self, matrix, title: str) -> np.ndarray:
        return self._get(ConfusionFigure, len(matrix)).render(matrix, title)


def curves(series, xlabel: str, ylabel: str, title: str, spread=None):
    """Lines `(label, x, y)` on one axis; `spread[i]`, when given, a band of +- it around
    line i."""
    return curve_panels([(series, xlabel, ylabel, title, spread)])


def curve_panels(panels):
    """Panels side by side, each `(series, xlabel, ylabel, title, spread)` as in `curves`."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4), squeeze=False)
    for ax, (series, xlabel, ylabel, title, spread) in zip(axes[0], panels):
        for i, (label, x, y) in enumerate(series):
            line, = ax.plot(x, y, label=label, marker="o" if len(x) <= 30 else None,
                            markersize=3)
            if spread is not None and spread[i] is not None:
                y, s = np.asarray(y, float), np.asarray(spread[i], float)
                ax.fill_between(x, y - s, y + s, color=line.get_color(), alpha=0.2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def cost_panels(settings: dict, within: float, goal: float, exact: str):
    """Accuracy against relative wall time, one panel per setting of
    `mwnet_tf.reporting.cost.points`: a point per row (mean over seeds, bars one sample std),
    the goal's edges dashed (the mean accuracy of the row named `exact` less `within`, `goal`
    times cross-entropy's time)."""
    fig, axes = plt.subplots(1, len(settings), figsize=(6.5 * len(settings), 4.5),
                             squeeze=False)
    for ax, (label, entries) in zip(axes[0], settings.items()):
        level = next(e for e in entries if e["name"] == exact)["mean_accuracy"] - within
        colors = plt.get_cmap("tab20").colors
        for i, e in enumerate(entries):
            acc, rel = np.asarray(e["accuracy"]), np.asarray(e["relative_wall"])
            ax.errorbar(rel.mean(), acc.mean(), xerr=_std(rel), yerr=_std(acc),
                        marker="osD^vP*Xh<>"[i % 11], color=colors[(2 * i) % 20 + (i // 10) % 2],
                        capsize=3, label=e["name"], linestyle="none")
        ax.axhline(level, color="gray", linestyle="--", linewidth=1)
        ax.axvline(goal, color="gray", linestyle=":", linewidth=1)
        ax.set_xlabel("wall time relative to cross-entropy")
        ax.set_ylabel("final test accuracy (%)")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    return fig


def histogram_panels(panels, xlabel: str):
    """Clean/corrupted histograms `(title, {bins, clean, corrupted})`, one panel each."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    for ax, (title, hist) in zip(axes[0], panels):
        _bars(ax, hist, xlabel)
        ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    return fig
