"""Callbacks of "What it loses" and of the Playground's "Why": what a variant gets wrong beside the teacher, and
which words a prediction rests on. Figures and tables come from the presentation layer; the figures from
``evaluation.inspection`` and ``evaluation.attribution``."""

from __future__ import annotations

import gradio as gr

from compression.core.errors import LabError
from compression.dashboard import views
from compression.dashboard.context import AppContext
from compression.evaluation.attribution import MAX_WORDS, TooLong, highlighted, occlusion
from compression.evaluation.inspection import compare, softmax
from compression.presentation.inspection import (
    confusion_figure,
    disagreements_frame,
    reliability_figure,
    slices_figure,
)
from compression.presentation.report import loss_picks
from compression.store.predictions import NoPredictions

MAX_BATCH_TEXTS = 50  # the batch check's optional attribution: one batch per text
INTRO = ("Pick a variant: both confusion matrices, where its accuracy drops (by text length, label, negation; word "
         "overlap for pairs), how well its confidence matches its accuracy, and every example one model gets right "
         "and the other wrong (McNemar's discordant pairs). Click an example to send it to the Playground.")


def _teacher(rows: list[dict]) -> str | None:
    return next((r["name"] for r in rows if r.get("kind") == "teacher"), rows[0]["name"] if rows else None)


def choices(ctx: AppContext, variant: str | None = None, against: str | None = None):
    """The variant and against dropdowns for the run shown now: the picks kept while that run has them, else the
    first non-teacher variant against the teacher (variants of a starter run join while the page is open)."""
    rows = ctx.source.rows()
    names, teacher = [r["name"] for r in rows], _teacher(rows)
    others = [n for n in names if n != teacher]
    return (gr.update(choices=others, value=variant if variant in others else (others[0] if others else None)),
            gr.update(choices=names, value=against if against in names else teacher))


def show(ctx: AppContext, variant: str | None, against: str | None):
    """(note, confusion of against, confusion of variant, slices, reliability, disagreements, texts by row)."""
    empty = (None, None, None, None, None, [])
    if not variant or not against:
        return ("No variant to inspect yet.", *empty)
    try:
        found = compare(variant, ctx.source.predictions(variant), against, ctx.source.predictions(against))
    except NoPredictions as err:
        return (f"**No per-example results here:** {err}", *empty)
    except (LabError, ValueError) as err:
        raise gr.Error(str(err)) from None
    frame = disagreements_frame(found)
    by_index = {e["index"]: _text_of(e) for e in found["teacher_right_variant_wrong"]
                + found["variant_right_teacher_wrong"]}
    b, c = (found["mcnemar"][k] for k in ("teacher_right_variant_wrong", "variant_right_teacher_wrong"))
    note = (f"**{variant}** against **{against}** on {found['examples']:,} test examples: {against} right and "
            f"{variant} wrong on **{b}**, the reverse on **{c}** (McNemar's test compares these two counts).")
    return (note, confusion_figure(found, against), confusion_figure(found, variant), slices_figure(found),
            reliability_figure(found), frame, [by_index[int(i)] for i in frame["index"]])


def for_report(ctx: AppContext, rows: list[dict]) -> list[dict]:
    """The inspections the HTML report shows (the variants :func:`loss_picks` chooses); [] for a run without
    per-example results (an older store, or the reference figures shown before any build)."""
    teacher = _teacher(rows)
    if not teacher or not rows[0].get("bundle"):
        return []
    try:
        theirs = ctx.source.predictions(teacher)
        return [compare(name, ctx.source.predictions(name), teacher, theirs, limit=5)
                for name, _ in loss_picks(rows)]
    except (NoPredictions, LabError, ValueError):
        return []


def _text_of(example: dict):
    return (example["text"], example["text_pair"]) if "text_pair" in example else example["text"]


def send(rows: list, event: gr.SelectData):
    """A click on a disagreement: its text (both texts of a pair) into the Playground, and the Playground shown."""
    row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
    if not rows or row is None or row >= len(rows) or rows[row] is None:
        return gr.skip(), gr.skip(), gr.skip()
    text = rows[row]
    first, second = text if isinstance(text, tuple) else (text, "")
    return first, second, gr.Tabs(selected="playground")


def why(ctx: AppContext, text: str | None, second: str | None, variant: str | None):
    """Word attribution of the teacher's and ``variant``'s answers (leave-one-word-out, through each runtime)."""
    pair = ctx.pair()
    parts = [(text or "").strip(), (second or "").strip()] if pair else [(text or "").strip()]
    if not all(parts):
        raise gr.Error("Type a text first (both texts for a pair): the words of that text are what gets explained.")
    rows = {r["name"]: r for r in ctx.source.rows() if r.get("status", "ok") == "ok"}
    teacher = _teacher(list(rows.values()))
    names = [teacher] + ([variant] if variant and variant != teacher else [])
    out = []
    for name in names:
        if name not in rows:
            raise gr.Error(f"{name} is not a healthy variant of the run shown")
        bundle = ctx.cache.get(rows[name]["bundle"])
        sample = tuple(parts) if pair else parts[0]
        try:
            result = occlusion(sample, lambda texts, b=bundle: softmax(b.logits(texts)), bundle.labels)
        except TooLong as err:
            raise gr.Error(str(err)) from None
        spans = highlighted(sample, result)
        joined = spans[0] + ([(" ‖ ", None)] + spans[1] if len(spans) > 1 else [])
        strongest = max((abs(s) for _, s in joined if s is not None), default=0.0) or 1.0
        joined = [(piece, None if s is None else round(s / strongest, 4)) for piece, s in joined]
        out.append((f"{name}: {result['label']} ({result['probability']:.0%})", joined))
    if len(out) == 1:
        out.append(("pick a variant to compare", []))
    return (gr.update(value=out[0][1], label=out[0][0]), gr.update(value=out[1][1], label=out[1][0]),
            f"Red words push towards the predicted label, blue ones against it: each is scored by how much the "
            f"probability of that label falls when the word alone is left out; the strongest word of each text is "
            f"coloured fully (texts of up to {MAX_WORDS} words).")


def deciding_words(ctx: AppContext, rows: list[dict], name: str, texts: list, top: int = 3) -> list[str]:
    """For the batch check: per text, the ``top`` words ``name``'s answer rests on most, with their scores."""
    if len(texts) > MAX_BATCH_TEXTS:
        raise gr.Error(f"word attribution in a batch covers up to {MAX_BATCH_TEXTS} texts (this batch has "
                       f"{len(texts)}): untick it, or explain fewer texts")
    bundle = ctx.cache.get(next(r["bundle"] for r in rows if r["name"] == name))
    out = []
    for text in texts:
        try:
            result = occlusion(text, lambda xs: softmax(bundle.logits(xs)), bundle.labels)
        except TooLong:
            out.append(f"(over {MAX_WORDS} words)")
            continue
        best = sorted(result["words"], key=lambda w: -abs(w.score))[:top]
        out.append(", ".join(f"{w.text} ({w.score:+.2f})" for w in best))
    return out


def why_choices(ctx: AppContext):
    rows = ctx.source.rows()
    teacher = _teacher(rows)
    others = [r["name"] for r in views.teacher_first(rows) if r["name"] != teacher]
    return gr.update(choices=others, value=others[0] if others else None)
