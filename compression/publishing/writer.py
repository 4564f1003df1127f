"""Published runs: one finished run packed into a self-contained, read-only folder that travels.

Built where there are cores, served where the audience is (a Hugging Face Space, a laptop in a meeting) with no
build and nothing written into it. Layout (version 1)::

    manifest.json    format, version, run, recipe, created, lab_version, variants (teacher first) and the SHA-256
                     of every other file in the folder
    results.json     {"label", "run", "variants": [variant rows, "bundle" = "bundles/NAME"]}; a pair task also
                     "pair": its two input names, e.g. ["sentence1", "sentence2"] (so does the manifest)
    recipe.json      the recipe that made the run
    examples.json    example texts for the Playground and test sentences for ``bench``: "task" single or pair
                     (then "pair" names the inputs and each text is a two-item list)
    predictions.json every variant's probabilities on each test example, with the split (texts, gold labels):
                     what ``inspect`` and the dashboard's view read (absent when the store had none)
    README.md        the report a person reads on the Hub (results table, chart, speed provenance, how to serve)
    chart.png        accuracy vs latency (when Playwright + Chromium could draw it)
    bundles/NAME/    a copy of each bundle, plus README.md: a Hub-style model card

``publish`` (here) writes one: a folder, a zip or a Hub repo. ``open_published`` and ``PublishedRun`` (in
:mod:`compression.publishing.reader`, importable from here too) read one without writing into it; the model cards
and the README come from :mod:`compression.publishing.cards`.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable

from compression.bundle.meta import META_FILE, _sha256, bundle_problem, read_meta
from compression.core import __version__
from compression.core.atomic import temp_path, write_json_atomic
from compression.core.config import DataConfig
from compression.core.errors import LabError
from compression.core.texts import as_text, char_length, texts_of
from compression.data.loading import load_data
from compression.evaluation.results import current_variants, run_predictions, variant_row
from compression.publishing.cards import (
    BASE_MODELS,
    CARD_TAGS,
    card_metadata,
    hub_dataset_id,
    hub_model_id,
    model_card,
    root_model,
    run_readme,
    shown_ref,
)
from compression.publishing.reader import (
    CARD,
    CHART,
    EXAMPLES,
    FORMAT,
    HUB_PREFIX,
    HUB_REPO,
    MANIFEST,
    PREDICTIONS,
    README,
    RECIPE,
    RESULTS,
    UNSAFE_SUFFIXES,
    VERSION,
    PublishedRun,
    _offline,
    open_published,
)
from compression.store.predictions import NoPredictions

# The reading side and the cards are re-exported: ``from compression.publishing.writer import open_published`` works too.
__all__ = ["publish", "open_published", "PublishedRun", "model_card", "run_readme", "card_metadata", "hub_model_id",
           "hub_dataset_id", "root_model", "shown_ref", "BASE_MODELS", "CARD_TAGS", "FORMAT", "VERSION"]

EXAMPLE_TEXTS, TEST_TEXTS, EXAMPLE_MAX_CHARS = 12, 200, 160

Progress = Callable[[float, str], None]


# ------------------------------------------------------------------------------------------------- writing

def publish(store, to: str, run: str = "latest", variants: list[str] | None = None,
            progress: Progress | None = None, *, label: str | None = None, chart: bool = True) -> str:
    """Pack the finished variants of one run of ``store`` into a published run at ``to`` and return where it went.

    ``to``: a folder (new or empty), a ``FILE.zip`` (new) or ``hub:USER/NAME``. ``variants``: names to include
    (default: every intact variant of the run); the teacher is always included, because every ratio is against it.
    ``chart=False`` skips drawing chart.png (it needs Playwright + Chromium).
    """
    report = progress or (lambda fraction, message: None)
    kind, target = _destination(str(to))
    chosen, rows, run_id = _select(store, str(run), variants, report)
    recipe = store.get_run(run_id)["recipe"]
    predictions = _predictions(store, run_id, [r["name"] for r in chosen], report)
    label = label or f"{recipe.get('name', 'run')} recipe, run {run_id}, published {time.strftime('%Y-%m-%d')}"
    if kind == "hub":
        return _to_hub(target, lambda tmp: _build(tmp, chosen, rows, recipe, label, chart, report, predictions), report)
    tmp = temp_path(target)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if kind == "zip":
            _build(tmp / "run", chosen, rows, recipe, label, chart, report, predictions)
            _zip_folder(tmp / "run", target, report)
        else:
            _build(tmp, chosen, rows, recipe, label, chart, report, predictions)
            if target.is_dir():
                target.rmdir()  # checked empty above; a folder that filled meanwhile makes this fail loudly
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(1.0, f"published run {run_id} ({len(chosen)} variants) to {target}")
    return str(target)


def _destination(to: str) -> tuple[str, Path | str]:
    """('hub', 'user/name') | ('zip', Path) | ('folder', Path); refuses a destination that would lose data."""
    if to.startswith(HUB_PREFIX):
        repo = to[len(HUB_PREFIX):]
        if not HUB_REPO.match(repo):
            raise LabError(f"{to!r} is not a Hub repo: write hub:USER/NAME")
        return "hub", repo
    target = Path(to).expanduser().absolute()
    if target.suffix.lower() == ".zip":
        if target.exists():
            raise LabError(f"{target} already exists: choose another file name or delete it first")
        if not target.parent.is_dir():
            raise LabError(f"folder {target.parent} does not exist: create it first")
        return "zip", target
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise LabError(f"{target} already exists and is not an empty folder: publish to a new folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    return "folder", target


def _select(store, run: str, names: list[str] | None, report: Progress) -> tuple[list[dict], list[dict], int]:
    """(the rows to publish, teacher first; every row of the run; the run id)."""

    if run == "all":
        raise LabError("publish takes one run (latest or a run id), not all: ratios only compare within a run")
    rows = [variant_row(v) for v in current_variants(store, run)]
    if not rows:
        raise LabError(f"nothing to publish: store {store.root} has no finished variants; build a recipe first")
    by_name = {r["name"]: r for r in rows}
    teacher = next((r for r in rows if r["kind"] == "teacher"), None)
    if teacher is None:
        raise LabError(f"run {rows[0]['run']} has no finished teacher: every ratio is against it, so it cannot be "
                       f"published")
    if names is None:
        chosen = [r for r in rows if r["status"] == "ok" or r is teacher]
        for r in rows:
            if r not in chosen:
                report(0.0, f"left out {r['name']}: {r['status']}")
    else:
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise LabError(f"run {rows[0]['run']} has no finished variant {', '.join(map(repr, unknown))} "
                           f"(known: {', '.join(by_name)})")
        if teacher["name"] not in names:
            report(0.0, f"added {teacher['name']}: every ratio is against the teacher, so it is always published")
        chosen = [teacher] + [by_name[n] for n in dict.fromkeys(names) if n != teacher["name"]]
    broken = next((r for r in chosen if r["status"] != "ok"), None)
    if broken is not None:
        raise LabError(f"cannot publish {broken['name']}: its bundle is {broken['status']}; rebuild it")
    chosen.sort(key=lambda r: r is not teacher)
    return chosen, rows, int(rows[0]["run"])


def _build(root: Path, chosen: list[dict], rows: list[dict], recipe: dict, label: str, chart: bool,
           report: Progress, predictions: dict | None = None) -> None:
    """Write the whole published run into the new folder ``root``; the manifest last."""
    from datetime import datetime, timezone

    root.mkdir(parents=True)
    run_id = int(chosen[0]["run"])
    for i, row in enumerate(chosen):
        report(0.05 + 0.6 * i / len(chosen), f"copying bundle {row['name']}")
        _copy_bundle(Path(row["bundle"]), root / "bundles" / row["name"])
        card = model_card(row, rows, recipe)
        (root / "bundles" / row["name"] / CARD).write_text(card, encoding="utf-8")
    published = [{**r, "bundle": f"bundles/{r['name']}", "status": "ok"} for r in chosen]
    pair = _pair_of(read_meta(chosen[0]["bundle"]))  # a pair task names its two inputs; single-text runs as before
    inputs = {"pair": list(pair)} if pair else {}
    _write_json(root / RESULTS, {"label": label, "run": run_id, **inputs, "variants": published})
    _write_json(root / RECIPE, recipe)
    if predictions is not None:
        _write_json(root / PREDICTIONS, predictions)
    report(0.7, "collecting example texts")
    examples = _examples(recipe, Path(chosen[0]["bundle"]))
    _write_json(root / EXAMPLES, examples)
    chart_note = _chart(root / CHART, published, label, report) if chart else "publish ran with --no-chart"
    origin = root_model(chosen[0]["name"], rows)
    (root / README).write_text(run_readme(published, recipe, label, examples, chart_note, origin), encoding="utf-8")
    report(0.9, "hashing every file for the manifest")
    manifest = {"format": FORMAT, "version": VERSION, "run": run_id, "recipe": recipe.get("name"), **inputs,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "lab_version": __version__,
                "variants": [r["name"] for r in chosen], "files": _hash_tree(root)}
    _write_json(root / MANIFEST, manifest)


def _predictions(store, run_id: int, names: list[str], report: Progress) -> dict | None:
    """Every chosen variant's test predictions and the split they refer to (``predictions.json``), or None when
    the store kept none for some of them (built before it did)."""
    try:
        found = dict(run_predictions(store, names, str(run_id)))
    except NoPredictions:
        report(0.0, "no per-example results in this store (built before the lab kept them): the published run "
                    "has none; `inspect` and the dashboard's view need a build with this version")
        return None
    split = next(iter(found.values())).split
    if any(p.split.digest != split.digest for p in found.values()):
        raise LabError(f"run {run_id}: its variants were scored on different test splits; rebuild the run")
    return {"split": {"digest": split.digest, "labels": split.labels, "gold": split.gold,
                      "texts": [list(t) if isinstance(t, tuple) else t for t in split.texts]},
            # unrounded (float32 values, exact in JSON): rounding could flip a near-tie's argmax
            "variants": {name: p.probs for name, p in found.items()}}


def _write_json(path: Path, data) -> None:
    write_json_atomic(path, data, end="\n", indent=1, ensure_ascii=False, sort_keys=False)


def _hash_tree(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel != MANIFEST:
            st = path.stat()
            out[rel] = _sha256(str(path), st.st_size, st.st_mtime_ns)
    return out


def _copy_bundle(src: Path, dst: Path) -> None:
    """Copy a verified bundle as it is: the files its bundle.json lists (all of them for older bundles)."""

    problem = bundle_problem(src)
    if problem:
        raise LabError(f"cannot publish {src.name}: {problem}; rebuild it")
    listed = read_meta(src).get("files")
    names = [*listed, META_FILE] if listed else [p.relative_to(src).as_posix() for p in sorted(src.rglob("*"))
                                                 if p.is_file()]
    unsafe = [n for n in names if n.lower().endswith(UNSAFE_SUFFIXES)]
    if unsafe:
        raise LabError(f"cannot publish {src.name}: it holds {', '.join(unsafe[:3])}, which a published run refuses "
                       f"(code or pickles); rebuild it")
    for name in names:
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / name, dst / name)


def _examples(recipe: dict, teacher_bundle: Path) -> dict:
    """Playground examples and bench sentences from the run's test split (pairs, as two-item lists, for a pair
    task); the probe texts when it cannot load."""
    import random


    source = (recipe.get("data") or {}).get("source")
    meta = read_meta(teacher_bundle)
    try:
        data = load_data(DataConfig(**recipe["data"]))
        texts = [t for t in texts_of(data.splits["test"]) if all(part.strip() for part in _parts(t))]
        pair = data.pair or _pair_of(meta)
    except (LabError, OSError, ValueError, TypeError, KeyError) as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        probe = [as_text(t) for t in meta.get("probe", {}).get("texts", [])]
        return {**_task(_pair_of(meta)), "texts": probe[:EXAMPLE_TEXTS], "test_texts": probe[:TEST_TEXTS],
                "source": source, "split": "probe",
                "note": f"the run's data could not be loaded where it was published ({reason}); these are the "
                        f"bundles' probe texts"}
    rng = random.Random(0)
    sample = rng.sample(texts, min(TEST_TEXTS, len(texts)))
    limit = EXAMPLE_MAX_CHARS * (2 if pair else 1)  # a pair is two texts to read
    short = [t for t in sample if char_length(t) <= limit] or sample
    return {**_task(pair), "texts": short[:EXAMPLE_TEXTS], "test_texts": sample, "source": source, "split": "test"}


def _parts(text) -> tuple:
    return text if isinstance(text, tuple) else (text,)


def _pair_of(meta: dict) -> tuple[str, str] | None:
    """A bundle's two input names (bundle.json's ``pair``), or None for a single-text classifier."""
    return tuple(meta["pair"]) if meta.get("pair") else None


def _task(pair: tuple[str, str] | None) -> dict:
    """examples.json's opening keys: the task kind, and a pair task's two input names."""
    return {"task": "pair", "pair": list(pair)} if pair else {"task": "single"}


def _chart(path: Path, rows: list[dict], label: str, report: Progress) -> str | None:
    """Draw chart.png; None when drawn, else why not (the README says how to add it)."""
    report(0.75, "drawing the chart")
    try:
        from compression.presentation.report import chart_png

        chart_png(rows, path, caption=label)
        return None
    except Exception as err:  # an optional picture: any failure (no Playwright, no Chromium) only leaves it out
        path.unlink(missing_ok=True)
        return " ".join(str(err).split())[:200] or type(err).__name__


def _zip_folder(folder: Path, target: Path, report: Progress) -> None:
    import zipfile

    report(0.95, f"writing {target.name}")
    tmp = target.with_name(f".{target.name}.part-{os.getpid()}")  # beside the build folder (.NAME.tmp-PID)
    try:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    packed = path.suffix in (".safetensors", ".onnx", ".png")  # already dense: store, do not deflate
                    zf.write(path, path.relative_to(folder).as_posix(),
                             compress_type=zipfile.ZIP_STORED if packed else zipfile.ZIP_DEFLATED)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _to_hub(repo: str, build: Callable[[Path], None], report: Progress) -> str:
    import tempfile

    if _offline():
        raise LabError("cannot upload to the Hugging Face Hub (HF_HUB_OFFLINE is set): offline? publish to a "
                       "folder or zip and upload it later")
    with tempfile.TemporaryDirectory(prefix="compression-lab-publish-") as tmp:
        build(Path(tmp) / "run")
        report(0.95, f"uploading to the Hugging Face Hub: {repo}")
        try:
            from huggingface_hub import HfApi

            api = HfApi()
            api.create_repo(repo, exist_ok=True)
            # delete_patterns: files of an earlier publish that this one does not have would fail the manifest check
            api.upload_folder(repo_id=repo, folder_path=Path(tmp) / "run", delete_patterns="*",
                              commit_message="Publish a BERT Compression Lab run")
        except Exception as err:  # network, auth, permissions: all one line for the user
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise LabError(f"cannot upload to the Hugging Face Hub ({reason}): offline? publish to a folder or zip "
                           f"and upload it later") from err
    report(1.0, f"published to https://huggingface.co/{repo}")
    return f"{HUB_PREFIX}{repo}"
