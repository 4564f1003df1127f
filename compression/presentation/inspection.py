"""What a variant loses beside the teacher, as figures and a table: pure functions of one
:func:`compression.evaluation.inspection.inspect` result (``found``), shared by the dashboard and the HTML report.

The charts follow :mod:`compression.presentation.figures`: its layout, fonts and colours, values printed where they
cannot be clipped, names taken as literal text and shortened so a title fits a 600 px chart.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from compression.core.texts import one_line
from compression.presentation.figures import (
    CHAR_PX,
    KIND_COLORS,
    LABEL_FONT_PX,
    LAYOUT,
    PLOT_HEIGHT_PX,
    PLOT_WIDTH_PX,
    padded_range,
)

TEACHER_COLOR, VARIANT_COLOR = KIND_COLORS["teacher"], "#d08770"
HEAT_SCALE = [[0.0, "#f4f6fa"], [1.0, "#5e81ac"]]
NAME_CHARS = 24        # a model's name in a title: longer ones are shortened ("…")
BAR_ROW_PX = 30        # height per slice (two bars) in the slices chart
FRAME_COLUMNS = ["who is right", "gold", "text", "teacher", "variant", "index"]
MINUS = "\u2212"       # a real minus sign: "−3.2 pts"


def _short(name: str, limit: int = NAME_CHARS) -> str:
    name = str(name)
    return name if len(name) <= limit else name[:limit - 1].rstrip() + "…"


def _plain(values) -> list[str]:
    """Names as literal text, as in figures: plotly reads <b>, <a href> and entities in labels."""
    return [html.escape(str(v), quote=False) for v in values]


def _title(text: str) -> str:
    return html.escape(text, quote=False)


def points(gap: float) -> str:
    """The variant's accuracy minus the teacher's, in points of the slice: ``gap`` is teacher minus variant."""
    value = -100 * gap
    if round(value, 1) == 0:
        return "±0.0 pts"
    return f"{'+' if value > 0 else MINUS}{abs(value):.1f} pts"


def confusion_figure(found: dict, name: str) -> go.Figure:
    """``found["confusion"][name]`` as a heatmap: rows gold (first class on top), columns predicted, counts in the
    cells, each cell's share of its gold row in the hover."""
    matrix = np.asarray(found["confusion"][name], dtype=np.int64)
    labels = _plain(found["labels"])
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0) * 100
    fig = go.Figure(go.Heatmap(
        z=matrix, x=labels, y=labels, colorscale=HEAT_SCALE, showscale=False, xgap=2, ygap=2,
        text=matrix, texttemplate="%{text:,}", textfont=dict(size=LABEL_FONT_PX + 2), customdata=share,
        hovertemplate="gold %{y}, predicted %{x}: %{z:,} (%{customdata:.1f} % of gold %{y})<extra></extra>"))
    fig.update_layout(**LAYOUT)
    fig.update_layout(title_text=_title(f"{_short(name)}: confusion ({found['examples']:,} test examples)"),
                      xaxis_title="predicted", yaxis_title="gold", showlegend=False,
                      height=max(LAYOUT["height"], 160 + 48 * len(labels)))
    fig.update_xaxes(type="category", automargin=True, showgrid=False,
                     tickangle=-35 if max(map(len, labels)) * CHAR_PX > PLOT_WIDTH_PX / len(labels) - 6 else 0)
    fig.update_yaxes(type="category", autorange="reversed", automargin=True, showgrid=False)
    return fig


def worst_slice(found: dict) -> dict | None:
    """The slice where the variant trails the teacher most (ties: more examples lost); None when it trails nowhere."""
    losing = [s for s in found["slices"] if s["gap"] > 0]
    return max(losing, key=lambda s: (s["gap"], s["lost"])) if losing else None


def _slices_title(found: dict) -> tuple[str, str]:
    """Title and subtitle; names and the slice shortened so the title fits a 600 px chart (~72 characters)."""
    v, t = _short(found["variant"], 20), _short(found["against"], 20)
    worst = worst_slice(found)
    if worst is None:
        return f"{v} trails {t} on no slice", "test accuracy by slice; bar labels: variant minus teacher, in points"
    return (f"{v} loses most on “{_short(worst['slice'], 22)}” ({points(worst['gap'])})",
            f"{worst['lost']:,} of {worst['examples']:,} examples lost there; bar labels: variant minus teacher, "
            f"in points")


def slices_figure(found: dict) -> go.Figure:
    """Teacher and variant accuracy per slice as grouped horizontal bars, slices grouped by kind in their order,
    the variant's bar labelled with its gap to the teacher (e.g. "−3.2 pts")."""
    rows = found["slices"]
    title, subtitle = _slices_title(found)
    fig = go.Figure()
    if not rows:
        fig.update_layout(**LAYOUT)
        fig.update_layout(title_text=_title(title), annotations=[dict(
            text="no slices", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")])
        return fig
    y = [_plain(s["kind"] for s in rows), _plain(s["slice"] for s in rows)]
    for name, key, color in ((found["against"], "teacher_accuracy", TEACHER_COLOR),
                             (found["variant"], "variant_accuracy", VARIANT_COLOR)):
        is_variant = key == "variant_accuracy"
        fig.add_trace(go.Bar(
            y=y, x=[100 * s[key] for s in rows], orientation="h", name=_title(_short(name, 40)),
            marker_color=color, text=[points(s["gap"]) for s in rows] if is_variant else None,
            textposition="outside", cliponaxis=False, textfont=dict(size=LABEL_FONT_PX),
            hovertext=_plain(f"{s['slice']}: {100 * s[key]:.1f} % ({s['examples']:,} examples, {s['lost']} lost "
                             f"by the variant)" for s in rows),
            hovertemplate="%{hovertext}<extra>" + _title(_short(name)) + "</extra>"))
    label_px = max(len(points(s["gap"])) for s in rows) * CHAR_PX + 12  # the gap label right of a 100 % bar
    fig.update_layout(**LAYOUT)
    fig.update_layout(title=dict(text=_title(title), subtitle=dict(text=_title(subtitle),
                                                                    font=dict(size=12, color="#555"))),
                      barmode="group", bargap=0.25, bargroupgap=0.05, xaxis_title="test accuracy %",
                      height=max(LAYOUT["height"], 190 + BAR_ROW_PX * len(rows)),
                      margin=dict(LAYOUT["margin"], r=max(LAYOUT["margin"]["r"], int(label_px)), t=84))
    fig.update_xaxes(range=[0, 100], automargin=True)
    fig.update_yaxes(autorange="reversed", automargin=True)  # the first slice on top
    return fig


def _bubble(examples, largest: int) -> np.ndarray:
    return 6 + 22 * np.sqrt(np.asarray(examples, dtype=float) / max(largest, 1))


def reliability_figure(found: dict) -> go.Figure:
    """Reliability diagram of the teacher and the variant: mean confidence vs accuracy per bin (marker area ~
    examples in the bin), the diagonal as perfect calibration, each model's ECE in its legend name."""
    cal, classes = found["calibration"], max(len(found["labels"]), 2)
    names = [found["against"], found["variant"]]
    largest = max((b["examples"] for n in names for b in cal[n]["bins"]), default=1)
    fig, xs, ys, radii = go.Figure(), [100 / classes, 100.0], [0.0, 100.0], [0.0, 0.0]
    low = 100 / classes
    fig.add_trace(go.Scatter(x=[low, 100], y=[low, 100], mode="lines", name="perfect calibration",
                             line=dict(dash="dash", color="#999"), hoverinfo="skip"))
    for name, color in zip(names, (TEACHER_COLOR, VARIANT_COLOR)):
        bins = cal[name]["bins"]
        size = _bubble([b["examples"] for b in bins], largest)
        x, y = [100 * b["confidence"] for b in bins], [100 * b["accuracy"] for b in bins]
        xs, ys, radii = xs + x, ys + y, radii + list(size / 2 + 2)
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers", name=_title(f"{_short(name, 40)} (ECE {cal[name]['ece']:.3f})"),
            line=dict(color=color, width=1.5), cliponaxis=False,
            marker=dict(size=size, color=color, opacity=0.8, line=dict(width=1, color="#222")),
            customdata=[[b["low"], b["high"], b["examples"]] for b in bins],
            hovertemplate=("confidence %{customdata[0]:.2f}-%{customdata[1]:.2f}: %{customdata[2]:,} examples<br>"
                           "mean confidence %{x:.1f} %, accuracy %{y:.1f} %<extra>" + _title(_short(name)) +
                           "</extra>")))
    fig.update_layout(**LAYOUT)
    fig.update_layout(title=dict(text="Calibration: confidence vs accuracy", subtitle=dict(
        text="marker area = examples in the bin; on the dashed diagonal, confidence is honest",
        font=dict(size=12, color="#555"))), xaxis_title="mean top-class confidence %",
        yaxis_title="accuracy in the bin %", margin=dict(LAYOUT["margin"], t=84))
    fig.update_xaxes(range=padded_range(xs, radii, radii, PLOT_WIDTH_PX, 5.0), automargin=True)
    fig.update_yaxes(range=padded_range(ys, radii, radii, PLOT_HEIGHT_PX, 5.0), automargin=True)
    return fig


def _side(prediction: dict) -> str:
    """A model's answer on one example: its label and that label's probability, e.g. "pos 0.93"."""
    label = prediction["label"]
    return f"{label} {prediction['probabilities'][label]:.2f}"


def disagreements_frame(found: dict) -> pd.DataFrame:
    """One row per discordant example (McNemar's items): first those only the teacher gets right, then those only
    the variant gets right, in ``found``'s order (most confident mistake first). "who is right" names the model;
    a pair's texts are joined with " ‖ "; "index" is the example's place in the test split."""
    rows = []
    for key, right in (("teacher_right_variant_wrong", found["against"]),
                       ("variant_right_teacher_wrong", found["variant"])):
        for e in found[key]:
            text = (e["text"], e["text_pair"]) if "text_pair" in e else e["text"]
            rows.append({"who is right": f"{right} only", "gold": e["label"], "text": one_line(text),
                         "teacher": _side(e["teacher"]), "variant": _side(e["variant"]), "index": int(e["index"])})
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)
