"""The dashboard's callbacks: module-level functions over an injected :class:`AppContext`, so each one is testable
without a browser (``app.py`` binds them with ``functools.partial``). User mistakes become ``gr.Error``; every
figure shown was measured by the backend, except the latency of the request being served, labelled as such."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import gradio as gr

from compression.builder.child import BuildProcess
from compression.core.config import Recipe, load_recipe
from compression.core.errors import LabError, describe_os_error
from compression.core.hardware import cpu_info
from compression.core.texts import Text
from compression.core.typed import from_dict
from compression.dashboard import losses, views
from compression.dashboard.context import AppContext, pair_of
from compression.evaluation import advisor
from compression.presentation import figures, tables
from compression.presentation.report import html_report, leaderboard_csv

CUSTOM = "custom (below)"
INPUTS = 6  # what `inputs` updates: two Playground boxes, two Batch check inputs, two example lists


def shown_rows(ctx: AppContext) -> tuple[list[dict], str]:
    """The source's rows, or (a store with none yet) the project's labelled reference result."""
    rows = ctx.source.rows()
    if rows:
        return rows, ctx.source.describe(rows)
    ref, label = views.reference_rows()
    building = " The starter run is building now: its variants join as they are recorded." if ctx.building() else ""
    if ref:
        return ref, (f"<div class='reference-banner'>No local results yet: showing the <b>reference result</b> of the "
                     f"project's published run ({label}).{building}</div>")
    return [], f"No variants yet.{building}"


def refresh(ctx: AppContext):
    rows, status = shown_rows(ctx)
    df = tables.frame(rows)
    names = [r["name"] for r in rows if r.get("bundle")]  # reference rows carry no bundle
    ctx.warm([r for r in rows if r.get("bundle")])
    return (status, tables.leaderboard(rows), tables.leaderboard(rows, full=True), tables.provenance_markdown(rows),
            figures.accuracy_vs_latency(df), figures.accuracy_vs_size(df), figures.latency_bars(df),
            figures.size_bars(df), gr.update(choices=names, value=names[0] if names else None))


def _no_variants(ctx: AppContext) -> gr.Error:
    if ctx.building():
        s = ctx.build.state
        return gr.Error(f"The {s.recipe} run is still building ({s.fraction:.0%}: {s.message}); the teacher joins "
                        f"the Playground as soon as it is recorded. Try again in a moment.")
    if ctx.policy.enabled:
        return gr.Error("No variants to run yet: build a recipe in the Lab tab first.")
    return gr.Error("No variants to run here: builds are off on this deployment (see the Lab tab).")


def predict(ctx: AppContext, text: str, second: str | None = None):
    """Every variant's answer, streamed row by row (teacher first) as each one answers. ``second``: the pair's
    second text when the run classifies pairs (left empty otherwise)."""
    text, second = _clean(text), _clean(second)
    rows = views.teacher_first([r for r in ctx.source.rows() if r.get("bundle")])
    pair = pair_of(rows)
    if not (text or (pair and second)):  # one box of a pair filled: _playground_input says which is missing
        raise nothing_to_classify(pair)
    if not rows:
        raise _no_variants(ctx)
    item, notes = _playground_input(text, second, pair)
    ctx.warm(rows)
    results = []
    for i, row in enumerate(rows):
        results.append(_answer(ctx, row, item, notes))
        yield views.predictions_html(results, rows, pending=len(rows) - i - 1), " ".join(notes)


def nothing_to_classify(pair: tuple[str, str] | None) -> gr.Error:
    """The Playground's answer to an empty box: what to do, in words; the toast stays until closed, so the
    outputs' "Error" badge is never left on the page without them."""
    if pair:
        first, second = views.readable(pair[0]), views.readable(pair[1])
        message = (f"Type a sentence first in both boxes: this run classifies pairs of texts, so fill in {first} "
                   f"and {second} (or pick an example pair), then classify.")
    else:
        message = "Type a sentence first: the Text box is empty. Type a text to classify (or pick an example)."
    return gr.Error(message, duration=None)


def _clean(text: str | None) -> str:
    return (text or "").replace("\x00", "").strip()


def _playground_input(text: str, second: str, pair: tuple[str, str] | None) -> tuple[Text, list[str]]:
    """What the variants read (a text, or a pair for a pair task), clipped; the notes say what was clipped."""
    if pair and not (text and second):
        first_label, second_label = views.readable(pair[0]), views.readable(pair[1])
        raise gr.Error(f"This run classifies pairs of texts: fill in both {first_label} and {second_label} "
                       f"(reload the page if only one box shows).")
    if second and not pair:
        raise gr.Error("This run classifies single texts: leave the second box empty.")
    notes = []
    parts = [_clip(t, notes) for t in ((text, second) if pair else (text,))]
    return (parts[0], parts[1]) if pair else parts[0], notes


def _clip(text: str, notes: list[str]) -> str:
    if len(text) > views.MAX_TEXT_CHARS:
        notes.append(f"Text truncated to its first {views.MAX_TEXT_CHARS:,} characters (of {len(text):,}).")
    return text[:views.MAX_TEXT_CHARS]


def _answer(ctx: AppContext, row: dict, text: Text, notes: list[str]) -> dict:
    if row.get("status", "ok") != "ok":  # a corrupted bundle is shown as such, never run
        return {"name": row["name"], "label": row["status"], "confidence": 0.0, "latency_ms": 0.0}
    try:
        bundle = ctx.cache.get(row["bundle"])
        start = time.perf_counter()
        pred = bundle.predict([text])[0]
    except (LabError, OSError) as err:
        return {"name": row["name"], "label": f"broken: {err}", "confidence": 0.0, "latency_ms": 0.0}
    if pred.truncated and not any("tokens" in n for n in notes):
        what = "pair" if isinstance(text, tuple) else "text"
        notes.append(f"The {what} has {pred.tokens:,} tokens; the models read only the first {bundle.max_length}.")
    return {"name": row["name"], "label": pred.label, "confidence": pred.confidence,
            "latency_ms": (time.perf_counter() - start) * 1000}


def inputs(ctx: AppContext):
    """The inputs for the run shown now (one text, or a pair task's two): the boxes' labels, the second box shown or
    not, the Batch check's hints and the Playground's examples (single texts, or pairs from the run's own data).
    Bound to page load, Refresh, a finished Lab build and a change in the variants (the build banner), as a store
    may hold a pair run only later (a pair recipe built into it, or a starter run that is a pair task)."""
    pair = ctx.pair()
    hints = views.input_hints(pair)
    return (gr.update(label=hints["first"], placeholder=hints["first_hint"]),
            gr.update(label=hints["second"], placeholder=hints["second_hint"], visible=hints["pair"]),
            gr.update(label=hints["batch"]), gr.update(label=hints["upload"]), *example_updates(ctx, pair))


def example_updates(ctx: AppContext, pair: tuple[str, str] | None) -> tuple:
    """The Playground's two example lists (single texts; pairs) for the run shown now: only its kind is shown."""
    singles, pairs = views.example_samples(ctx.source.examples(pair), pair)
    hints = views.input_hints(pair)
    return (gr.update(samples=singles, visible=bool(singles)),
            gr.update(samples=pairs, headers=[hints["first"], hints["second"]], visible=bool(pairs)))


def pick_example(sample: list | None):
    """A single-text example clicked: it fills the text box."""
    return sample[0] if sample else gr.skip()


def pick_pair(sample: list | None):
    """A pair example clicked: it fills both boxes."""
    return (sample[0], sample[1]) if sample and len(sample) == 2 else (gr.skip(), gr.skip())


def playground_examples(ctx: AppContext) -> dict:
    """What the Playground offers now, for API clients such as the load test: ``pair`` (the two input names, or
    None for single texts) and ``examples`` (texts, or [first, second] pairs)."""
    pair = ctx.pair()
    return {"pair": list(pair) if pair else None,
            "examples": [list(t) if isinstance(t, tuple) else t for t in ctx.source.examples(pair)]}


def session_dir(ctx: AppContext, current: str | None) -> str:
    """A private folder per browser session, inside Gradio's temp folder (which it may serve files from);
    removed when the session ends."""
    if current and Path(current).is_dir():
        return current
    base = ctx.work_dir / "compression-lab-sessions"
    base.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix="s-", dir=base)


def batch_check(ctx: AppContext, text: str, upload, folder: str | None, explain: bool = False):
    """Every variant on a batch of texts (pairs for a pair task), with its agreement with the teacher and a CSV;
    ``explain``: also the words the teacher's answer rests on, per text (bounded: see losses.deciding_words)."""
    rows = [r for r in ctx.source.rows() if r.get("bundle")]
    pair = pair_of(rows)
    try:
        texts = views.parse_batch(text, upload, pair)
    except LabError as err:
        raise gr.Error(str(err)) from err
    if not rows:
        raise _no_variants(ctx)
    labels = {}
    for row in views.teacher_first(rows):
        if row.get("status", "ok") != "ok":
            continue  # broken bundles are listed as such on the Leaderboard and never run
        try:
            labels[row["name"]] = [p.label for p in ctx.cache.get(row["bundle"]).predict(texts)]
        except (LabError, OSError) as err:
            raise gr.Error(f"variant {row['name']}: {err}") from err
    teacher = next((r["name"] for r in rows if r["kind"] == "teacher"), None)
    result = tables.batch_table(texts, labels, pair)
    if explain and teacher is not None:
        result["teacher's deciding words"] = losses.deciding_words(ctx, rows, teacher, texts)
    folder = session_dir(ctx, folder)
    out = Path(folder) / "batch-predictions.csv"
    result.to_csv(out, index=False)
    return result, tables.agreement_summary(labels, teacher), str(out), folder


def recommend(ctx: AppContext, max_latency, max_size, min_retention, scenario: str = "your limits"):
    """A preset scenario (mobile, edge, real-time, cost) or the visitor's own limits -> the best variant and why."""

    rows, _ = shown_rows(ctx)
    rows = [r for r in rows if r.get("status", "ok") == "ok"]  # a broken bundle is never recommended
    if not rows:
        raise gr.Error("No variants yet: build a recipe first.")
    flags = cpu_info()["flags"]
    retention = (min_retention / 100) if min_retention else None
    preset = next((s for s in advisor.SCENARIOS if s.title == scenario), None)
    if preset is not None:
        rec = advisor.best_for(rows, preset, min_retention=retention or 0.0)
        lines = [f"*{preset.description}*", ""]
    else:
        rec = advisor.recommend(rows, max_latency or None, max_size or None, retention, flags)
        lines = []
    lines.append(f"### {'Recommended: ' + rec.best['name'] if rec.best else 'No variant fits'}")
    lines += [f"- {r}" for r in rec.reasons]
    if rec.excluded:
        lines += ["", "**Excluded**"] + [f"- {e}" for e in rec.excluded]
    lines += ["", "**What pays on this machine**"]
    lines += [f"- **{a.technique}**: {a.verdict} — {a.reason} *({a.evidence})*" for a in advisor.advise(flags, rows)]
    return "\n".join(lines)


def run_build(ctx: AppContext, recipe_choice, teacher, data, samples, students, techniques,
              progress=gr.Progress()):
    """Start a recipe in a child process (one build per app) and stream its log until it ends."""

    if not ctx.policy.enabled:  # API callers reach this too: refused, whatever they send
        raise gr.Error(f"Builds are off here: {ctx.policy.reason}.")
    recipe_file = _lab_recipe_file(ctx, recipe_choice, teacher, data, samples, students, techniques)
    with ctx.build_lock:
        if ctx.building():
            s = ctx.build.state
            raise gr.Error(f"A build is already running ({s.recipe}, {s.fraction:.0%}); wait for it to finish.")
        ctx.build = BuildProcess(recipe_file, ctx.source.root)
    state = ctx.build.state
    progress(0, desc=f"building {state.recipe}")
    shown = -1
    while state.running:
        time.sleep(0.5)
        if len(state.log) != shown:
            shown = len(state.log)
            progress(state.fraction, desc=state.message[:120])
            yield "\n".join(state.log)
    if state.error:
        raise gr.Error(state.error)
    yield "\n".join([*state.log, f"Done: run {state.run_id}. The other tabs show the new variants (Refresh)."])


def _lab_recipe_file(ctx: AppContext, recipe_choice, teacher, data, samples, students, techniques) -> Path:
    """The recipe file a Lab build runs: one the server ships, or the visitor's choices written as JSON. API
    callers can send any value: only the offered choices are accepted (no path is ever taken from input)."""

    if recipe_choice not in [CUSTOM, *views.app_recipes()] or teacher not in views.TEACHERS \
            or data not in views.DATA_SOURCES:
        raise gr.Error("Choose the recipe, teacher and data from the lists offered.")
    try:
        if recipe_choice != CUSTOM:
            load_recipe(views.RECIPES_DIR / recipe_choice)  # a broken file fails here, not in the child
            return views.RECIPES_DIR / recipe_choice
        recipe = views.lab_recipe(teacher, data, samples, students or [], techniques or [])
        from_dict(Recipe, recipe)  # validate before a process starts
    except (ValueError, LabError, FileNotFoundError) as err:
        raise gr.Error(str(err)) from err
    folder = ctx.source.root / "lab-recipes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"lab-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(recipe), encoding="utf-8")
    return path


def banner(ctx: AppContext, seen: int | None):
    """The build banner, and the views again when the set of variants changed (a build recorded a new one)."""
    rows = ctx.source.rows()
    count = sum(1 for r in rows if r.get("bundle"))
    html = ""
    if ctx.build is not None:
        s = ctx.build.state
        if s.running:
            html = (f"<div class='build-banner'>⏳ Building the <b>{s.recipe}</b> run: {s.fraction:.0%} — "
                    f"{views.html.escape(s.message)}. {count} variant(s) ready; each joins the Playground as soon as "
                    f"it is recorded, the teacher first.</div>")
        elif s.error:
            html = f"<div class='build-banner failed'>The {s.recipe} run failed: {views.html.escape(s.error)}</div>"
    if count == seen:
        return html, seen, *([gr.skip()] * (9 + INPUTS))
    return html, count, *refresh(ctx), *inputs(ctx)


def report_files(ctx: AppContext, folder: str | None):
    rows, _ = shown_rows(ctx)
    if not rows:
        raise gr.Error("Nothing to report yet.")
    folder = session_dir(ctx, folder)
    note = "" if rows[0].get("bundle") else "Reference result of the project's published run (no local results yet)."
    html_path, csv_path = Path(folder) / "compression-report.html", Path(folder) / "leaderboard.csv"
    html_path.write_text(html_report(rows, note=note, losses=losses.for_report(ctx, rows)), encoding="utf-8")
    csv_path.write_text(leaderboard_csv(rows), encoding="utf-8")
    return str(html_path), str(csv_path), folder


def bundle_zip(ctx: AppContext, name: str | None, folder: str | None):
    rows = {r["name"]: r for r in ctx.source.rows() if r.get("bundle")}
    if not name or name not in rows:  # names come from the source only: no path a user types is ever read
        raise gr.Error("Choose a variant from the list.")
    if rows[name].get("status", "ok") != "ok":
        raise gr.Error(f"{name} is {rows[name]['status']}")
    folder = session_dir(ctx, folder)
    try:
        archive = shutil.make_archive(str(Path(folder) / name), "zip", root_dir=rows[name]["bundle"])
    except OSError as err:
        raise gr.Error(describe_os_error(err) or str(err)) from err
    return archive, folder
