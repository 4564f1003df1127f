"""Pure figure builders: a variant DataFrame (``tables.frame``) in, plotly figures out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

KIND_COLORS = {"teacher": "#4c566a", "student": "#5e81ac", "pruned": "#a3be8c", "quantized": "#d08770"}
LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=60), height=420,
              font=dict(family="system-ui, sans-serif", size=13))


def _empty(title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, annotations=[dict(text="no measured variants yet", showarrow=False,
                                                     x=0.5, y=0.5, xref="paper", yref="paper")], **LAYOUT)
    return fig


def _colors(df: pd.DataFrame) -> list[str]:
    return [KIND_COLORS.get(k, "#888") for k in df["kind"]]


def bars(df: pd.DataFrame, column: str, title: str, axis: str) -> go.Figure:
    data = df.dropna(subset=[column]) if not df.empty and column in df else pd.DataFrame()
    if data.empty:
        return _empty(title)
    fig = go.Figure(go.Bar(x=data["name"], y=data[column], marker_color=_colors(data),
                           text=[f"{v:,.1f}" for v in data[column]], textposition="outside",
                           hovertext=data["kind"]))
    fig.update_layout(title=title, yaxis_title=axis, **LAYOUT)
    return fig


def size_bars(df: pd.DataFrame) -> go.Figure:
    return bars(df, "size_mb", "Bundle size (bytes on disk)", "MB")


def latency_bars(df: pd.DataFrame) -> go.Figure:
    return bars(df, "latency_p50_ms", "Batch-1 latency, p50 (real test sentences)", "ms")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated by another (lower x is better, higher y is better), sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _scatter(df: pd.DataFrame, x: str, title: str, x_title: str, frontier: bool) -> go.Figure:
    data = df.dropna(subset=[x, "accuracy"]) if not df.empty and x in df else pd.DataFrame()
    if data.empty:
        return _empty(title)
    data = data.reset_index(drop=True)
    size = data["size_mb"].fillna(data["size_mb"].median() if data["size_mb"].notna().any() else 10)
    bubble = 12 + 38 * (size / size.max()) ** 0.5
    front = pareto_front(list(zip(data[x], data["accuracy"])))
    # Name only the frontier and the teacher on the chart (names of crowded points overlap); hover names all.
    labels = [n if i in front or k == "teacher" else "" for i, (n, k) in enumerate(zip(data["name"], data["kind"]))]
    data = data.assign(label=labels, bubble=bubble, size=size)
    fig = go.Figure()
    for kind, part in data.groupby("kind", sort=False):  # one trace per kind: the legend explains the colours
        fig.add_trace(go.Scatter(
            x=part[x], y=part["accuracy"] * 100, mode="markers+text", text=part["label"],
            textposition="top center", hovertext=part["name"], name=kind,
            marker=dict(size=part["bubble"], color=KIND_COLORS.get(kind, "#888"), opacity=0.8,
                        line=dict(width=1, color="#222")),
            error_y=dict(type="data", symmetric=False, array=(part["ci_high"] - part["accuracy"]) * 100,
                         arrayminus=(part["accuracy"] - part["ci_low"]) * 100, thickness=1, color="#999"),
            customdata=part["size"], hovertemplate="%{hovertext}<br>accuracy %{y:.1f} %<br>" + x_title +
                                                   " %{x:.2f}<br>size %{customdata:.1f} MB<extra></extra>"))
    if frontier:
        fig.add_trace(go.Scatter(x=data[x].iloc[front], y=data["accuracy"].iloc[front] * 100, mode="lines",
                                 line=dict(dash="dash", color="#bf616a"), name="Pareto frontier"))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title="test accuracy % (95% CI)", **LAYOUT)
    low, high = data[x].min(), data[x].max()
    fig.update_xaxes(type="log", range=[np.log10(low) - 0.12, np.log10(high) + 0.12])  # room for the names
    return fig


def accuracy_vs_latency(df: pd.DataFrame) -> go.Figure:
    return _scatter(df, "latency_p50_ms", "Accuracy vs latency (bubble = size; dashed = Pareto frontier)",
                    "p50 latency, ms (log)", frontier=True)


def accuracy_vs_size(df: pd.DataFrame) -> go.Figure:
    return _scatter(df, "size_mb", "Accuracy vs size", "bundle MB (log)", frontier=True)
