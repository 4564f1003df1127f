"""Pure figure builders: a variant DataFrame (``tables.frame``) in, plotly figures out.

Every chart must stay legible at ~600 px wide (two side by side in the app at 1280×800) and at ~1000 px (one per row
in the HTML report): values, names and titles are never cut, and the legend sits below the plot, off the data.
Plotly cannot measure text before it draws, so the padding below is estimated from character counts with a
conservative plot size (``PLOT_WIDTH_PX`` × ``PLOT_HEIGHT_PX``); a wider chart only gets more room.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

KIND_COLORS = {"teacher": "#4c566a", "student": "#5e81ac", "pruned": "#a3be8c", "quantized": "#d08770"}
LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=24, t=64, b=40), height=440,
              font=dict(family="system-ui, sans-serif", size=13),
              title=dict(x=0.01, xanchor="left", font=dict(size=16)),
              legend=dict(orientation="h", x=0, xanchor="left", yref="container", y=0, yanchor="bottom"))
PLOT_WIDTH_PX, PLOT_HEIGHT_PX = 460, 250   # the smallest plotting area a chart gets (600 px figure, legend below)
LABEL_FONT_PX, CHAR_PX, LINE_PX = 12, 7.2, 16  # label font, a generous average character width, a line's height
BAR_HEADROOM = 1.18                        # y-range above the tallest bar, for its value printed on top


def _empty(title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(**LAYOUT)
    fig.update_layout(title_text=title, annotations=[dict(text="no measured variants yet", showarrow=False,
                                                          x=0.5, y=0.5, xref="paper", yref="paper")])
    return fig


def _plain(values) -> list[str]:
    """Names as literal text: plotly reads <b>, <a href> and entities in labels, and a name must not format a chart."""
    return [html.escape(str(v), quote=False) for v in values]


def _colors(df: pd.DataFrame) -> list[str]:
    return [KIND_COLORS.get(k, "#888") for k in df["kind"]]


def bars(df: pd.DataFrame, column: str, title: str, axis: str) -> go.Figure:
    """One bar per variant; its value printed above it, never clipped; names slanted when they would collide."""
    data = df.dropna(subset=[column]) if not df.empty and column in df else pd.DataFrame()
    if data.empty:
        return _empty(title)
    fig = go.Figure(go.Bar(x=_plain(data["name"]), y=data[column], marker_color=_colors(data),
                           text=[f"{v:,.1f}" for v in data[column]], textposition="outside", cliponaxis=False,
                           textfont=dict(size=LABEL_FONT_PX), hovertext=data["kind"]))
    longest = max(len(str(n)) for n in data["name"])
    crowded = longest * CHAR_PX > PLOT_WIDTH_PX / len(data) - 6
    fig.update_layout(**LAYOUT)
    fig.update_layout(title_text=title, yaxis_title=axis, bargap=0.25)
    fig.update_yaxes(range=[0, float(data[column].max()) * BAR_HEADROOM], automargin=True)
    fig.update_xaxes(tickangle=-35 if crowded else 0, automargin=True)
    return fig


def size_bars(df: pd.DataFrame) -> go.Figure:
    return bars(df, "size_mb", "Bundle size on disk", "MB")


def latency_bars(df: pd.DataFrame) -> go.Figure:
    return bars(df, "latency_p50_ms", "Latency per sentence (p50, batch 1)", "ms")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated by another (lower x is better, higher y is better), sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def padded_range(values, low_px, high_px, pixels: float, min_span: float) -> list[float]:
    """An axis range holding every value with ``low_px``/``high_px`` pixels free below/above it (a bubble's radius,
    a label): solved by fixed-point iteration, since the padding in axis units depends on the span it widens."""
    values, low_px, high_px = (np.asarray(a, dtype=float) for a in (values, low_px, high_px))
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < min_span:
        lo, hi = (lo + hi - min_span) / 2, (lo + hi + min_span) / 2
    share = lambda px: np.minimum(px / pixels, 0.45)  # noqa: E731 - a label wider than the plot cannot be helped
    span, pad_low, pad_high = hi - lo, 0.0, 0.0
    for _ in range(30):
        pad_low = max(0.0, float(np.max(share(low_px) * span - (values - lo))))
        pad_high = max(0.0, float(np.max(share(high_px) * span - (hi - values))))
        span = (hi - lo) + pad_low + pad_high
    return [lo - pad_low, hi + pad_high]


@dataclass(frozen=True)
class _Box:
    left: float
    right: float
    bottom: float
    top: float

    def overlap(self, other: _Box) -> float:
        width = min(self.right, other.right) - max(self.left, other.left)
        height = min(self.top, other.top) - max(self.bottom, other.bottom)
        return max(width, 0) * max(height, 0)


def label_positions(x_px, y_px, radius_px, labels: list[str]) -> list[str]:
    """'top center' or 'bottom center' per point: left to right, each label goes where it overlaps the labels placed
    so far and the bubbles least, a label over a label counting 4x a label over a (translucent) bubble; ties go
    opposite to the previous label. Unlabelled points get 'top center'."""
    obstacles = [(_Box(x - r, x + r, y - r, y + r), 1, j) for j, (x, y, r) in enumerate(zip(x_px, y_px, radius_px))]
    positions, previous = ["top center"] * len(labels), "bottom center"
    for i in sorted((i for i, text in enumerate(labels) if text), key=lambda i: x_px[i]):
        half, r = len(labels[i]) * CHAR_PX / 2, radius_px[i]
        boxes = {"top center": _Box(x_px[i] - half, x_px[i] + half, y_px[i] + r, y_px[i] + r + LINE_PX),
                 "bottom center": _Box(x_px[i] - half, x_px[i] + half, y_px[i] - r - LINE_PX, y_px[i] - r)}
        preferred = ["bottom center", "top center"] if previous == "top center" else ["top center", "bottom center"]
        clash = {p: sum(w * boxes[p].overlap(o) for o, w, j in obstacles if j != i) for p in preferred}
        positions[i] = previous = min(preferred, key=lambda p: clash[p])
        obstacles.append((boxes[previous], 4, -1))
    return positions


def _layout_points(data: pd.DataFrame, x: str) -> tuple[list[float], list[float], list[str]]:
    """Axis ranges (x in log10 units) padded so bubbles and labels stay inside the plot, and each label's side."""
    radius = data["bubble"].to_numpy() / 2 + 2
    half_label = data["label"].str.len().to_numpy() * CHAR_PX / 2
    log_x, acc = np.log10(data[x].to_numpy(dtype=float)), data["accuracy"].to_numpy(dtype=float) * 100
    side = np.maximum(radius, half_label) + 4
    x_range = padded_range(log_x, side, side, PLOT_WIDTH_PX, 0.3)
    vertical = radius + np.where(data["label"] != "", LINE_PX + 2, 0)  # room above *and* below: sides come later
    ci = pd.concat([data["ci_low"], data["ci_high"]]).dropna().to_numpy(dtype=float) * 100
    cap = np.full(len(ci), 4.0)  # an error bar's cap off the frame
    y_range = padded_range(np.concatenate([acc, ci]), np.concatenate([vertical, cap]),
                           np.concatenate([vertical, cap]), PLOT_HEIGHT_PX, 1.0)
    to_px = lambda v, r, px: (v - r[0]) / (r[1] - r[0]) * px  # noqa: E731
    positions = label_positions(to_px(log_x, x_range, PLOT_WIDTH_PX), to_px(acc, y_range, PLOT_HEIGHT_PX),
                                radius, list(data["label"]))
    return x_range, y_range, positions


def _scatter(df: pd.DataFrame, x: str, title: str, subtitle: str, x_title: str, frontier: bool) -> go.Figure:
    data = df.dropna(subset=[x, "accuracy"]) if not df.empty and x in df else pd.DataFrame()
    data = data[data[x] > 0] if not data.empty else data  # a log axis cannot place zero
    if data.empty:
        return _empty(title)
    data = data.reset_index(drop=True)
    size = data["size_mb"].fillna(data["size_mb"].median() if data["size_mb"].notna().any() else 10)
    bubble = 12 + 38 * (size / size.max()) ** 0.5
    front = pareto_front(list(zip(data[x], data["accuracy"])))
    # Name only the frontier and the teacher on the chart (names of crowded points overlap); hover names all.
    labels = [n if i in front or k == "teacher" else "" for i, (n, k) in enumerate(zip(data["name"], data["kind"]))]
    data = data.assign(label=labels, bubble=bubble, size=size)
    x_range, y_range, positions = _layout_points(data, x)
    data = data.assign(position=positions)
    fig = go.Figure()
    for kind, part in data.groupby("kind", sort=False):  # one trace per kind: the legend explains the colours
        fig.add_trace(go.Scatter(
            x=part[x], y=part["accuracy"] * 100, mode="markers+text", text=_plain(part["label"]),
            textposition=list(part["position"]), textfont=dict(size=LABEL_FONT_PX, color="#222"), cliponaxis=False,
            hovertext=_plain(part["name"]), name=kind,
            marker=dict(size=part["bubble"], color=KIND_COLORS.get(kind, "#888"), opacity=0.8,
                        line=dict(width=1, color="#222")),
            error_y=dict(type="data", symmetric=False, array=(part["ci_high"] - part["accuracy"]) * 100,
                         arrayminus=(part["accuracy"] - part["ci_low"]) * 100, thickness=1, color="#999"),
            customdata=part["size"], hovertemplate="%{hovertext}<br>accuracy %{y:.1f} %<br>" + x_title +
                                                   " %{x:.2f}<br>size %{customdata:.1f} MB<extra></extra>"))
    if frontier:
        fig.add_trace(go.Scatter(x=data[x].iloc[front], y=data["accuracy"].iloc[front] * 100, mode="lines",
                                 line=dict(dash="dash", color="#bf616a"), name="Pareto frontier"))
    fig.update_layout(**LAYOUT)
    fig.update_layout(title=dict(text=title, subtitle=dict(text=subtitle, font=dict(size=12, color="#555"))),
                      xaxis_title=x_title, yaxis_title="test accuracy % (95% CI)")
    fig.update_xaxes(type="log", range=x_range, automargin=True)
    fig.update_yaxes(range=y_range, automargin=True)
    return fig


def accuracy_vs_latency(df: pd.DataFrame) -> go.Figure:
    return _scatter(df, "latency_p50_ms", "Accuracy vs latency", "bubble area = size; dashed line = Pareto frontier",
                    "p50 latency, ms (log)", frontier=True)


def accuracy_vs_size(df: pd.DataFrame) -> go.Figure:
    return _scatter(df, "size_mb", "Accuracy vs size", "bubble area = size; dashed line = Pareto frontier",
                    "bundle MB (log)", frontier=True)
