"""Published runs: one finished run packed into a self-contained, read-only folder that travels.

Built where there are cores, served where the audience is (a Hugging Face Space, a laptop in a meeting) with no
build and nothing written into it. Layout (version 1)::

    manifest.json    format, version, run, recipe, created, lab_version, variants (teacher first) and the SHA-256
                     of every other file in the folder
    results.json     {"label", "run", "variants": [variant rows, "bundle" = "bundles/NAME"]}
    recipe.json      the recipe that made the run
    examples.json    example texts for the Playground and test sentences for ``bench``
    README.md        the report a person reads on the Hub (results table, chart, speed provenance, how to serve)
    chart.png        accuracy vs latency (when Playwright + Chromium could draw it)
    bundles/NAME/    a copy of each bundle, plus README.md: a Hub-style model card

``publish`` writes one (a folder, a zip or a Hub repo); ``open_published`` reads one. Reading never writes inside a
published folder: a zip is extracted once into the cache, a Hub repo is downloaded into the cache, and every bundle
is checked against the manifest before it is served, so a changed, missing or added file takes only its own
variant offline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
from pathlib import Path
from typing import Callable

from .errors import LabError

FORMAT = "compression-lab-published"
VERSION = 1
MANIFEST, RESULTS, RECIPE, EXAMPLES, README, CHART = (
    "manifest.json", "results.json", "recipe.json", "examples.json", "README.md", "chart.png")
HUB_PREFIX = "hub:"
HUB_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
# What a Hub download fetches: data, documentation, safetensors/ONNX weights and tokenizer files; never pickles
# (*.bin, *.pkl) or code (*.py). Anything else a repo holds is not downloaded.
HUB_PATTERNS = ["*.json", "*.md", "*.safetensors", "*.onnx", "*.txt", "*.png", "*.model", "*.tiktoken"]
# Files that could run code or unpickle when something loads a bundle: refused in a published run even if listed.
UNSAFE_SUFFIXES = (".py", ".pyc", ".pyo", ".so", ".dll", ".dylib", ".sh", ".exe",
                   ".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
CARD = "README.md"  # a bundle's model card: documentation the loader never reads, so edits on the Hub are allowed

# Limits on a zip from someone else (patched smaller in tests).
MAX_MEMBERS = 10_000
MAX_TOTAL_BYTES = 4 << 30
MAX_RATIO = 200
RATIO_MIN_BYTES = 10_000_000

EXAMPLE_TEXTS, TEST_TEXTS, EXAMPLE_MAX_CHARS = 12, 200, 160
BASE_MODELS = {"embedded:mpnet-base": "sentence-transformers/all-mpnet-base-v2",
               "embedded:minilm-l6": "sentence-transformers/all-MiniLM-L6-v2"}
CARD_TAGS = ("text-classification", "model-compression", "knowledge-distillation", "quantization", "pruning")

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
    label = label or f"{recipe.get('name', 'run')} recipe, run {run_id}, published {time.strftime('%Y-%m-%d')}"
    if kind == "hub":
        return _to_hub(target, lambda tmp: _build(tmp, chosen, rows, recipe, label, chart, report), report)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if kind == "zip":
            _build(tmp / "run", chosen, rows, recipe, label, chart, report)
            _zip_folder(tmp / "run", target, report)
        else:
            _build(tmp, chosen, rows, recipe, label, chart, report)
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
    from .results import current_variants, variant_row

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
           report: Progress) -> None:
    """Write the whole published run into the new folder ``root``; the manifest last."""
    root.mkdir(parents=True)
    run_id = int(chosen[0]["run"])
    for i, row in enumerate(chosen):
        report(0.05 + 0.6 * i / len(chosen), f"copying bundle {row['name']}")
        _copy_bundle(Path(row["bundle"]), root / "bundles" / row["name"])
        card = model_card(row, rows, recipe)
        (root / "bundles" / row["name"] / CARD).write_text(card, encoding="utf-8")
    published = [{**r, "bundle": f"bundles/{r['name']}", "status": "ok"} for r in chosen]
    _write_json(root / RESULTS, {"label": label, "run": run_id, "variants": published})
    _write_json(root / RECIPE, recipe)
    report(0.7, "collecting example texts")
    examples = _examples(recipe, Path(chosen[0]["bundle"]))
    _write_json(root / EXAMPLES, examples)
    chart_note = _chart(root / CHART, published, label, report) if chart else "publish ran with --no-chart"
    origin = root_model(chosen[0]["name"], rows)
    (root / README).write_text(run_readme(published, recipe, label, examples, chart_note, origin), encoding="utf-8")
    report(0.9, "hashing every file for the manifest")
    from datetime import datetime, timezone

    from . import __version__

    manifest = {"format": FORMAT, "version": VERSION, "run": run_id, "recipe": recipe.get("name"),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "lab_version": __version__,
                "variants": [r["name"] for r in chosen], "files": _hash_tree(root)}
    _write_json(root / MANIFEST, manifest)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")


def _hash_tree(root: Path) -> dict[str, str]:
    from .bundle import _sha256

    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel != MANIFEST:
            st = path.stat()
            out[rel] = _sha256(str(path), st.st_size, st.st_mtime_ns)
    return out


def _copy_bundle(src: Path, dst: Path) -> None:
    """Copy a verified bundle as it is: the files its bundle.json lists (all of them for older bundles)."""
    from .bundle import META_FILE, bundle_problem, read_meta

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
    """Playground examples and bench sentences from the run's test split; the probe texts when it cannot load."""
    import random

    from .bundle import read_meta
    from .config import DataConfig

    source = (recipe.get("data") or {}).get("source")
    try:
        from .data import load_data

        test = load_data(DataConfig(**recipe["data"])).splits["test"]
        texts = [t for t in test["text"] if t.strip()]
    except (LabError, OSError, ValueError, TypeError, KeyError) as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        probe = list(read_meta(teacher_bundle).get("probe", {}).get("texts", []))
        return {"task": "single", "texts": probe[:EXAMPLE_TEXTS], "test_texts": probe[:TEST_TEXTS],
                "source": source, "split": "probe",
                "note": f"the run's data could not be loaded where it was published ({reason}); these are the "
                        f"bundles' probe texts"}
    rng = random.Random(0)
    sample = rng.sample(texts, min(TEST_TEXTS, len(texts)))
    short = [t for t in sample if len(t) <= EXAMPLE_MAX_CHARS] or sample
    return {"task": "single", "texts": short[:EXAMPLE_TEXTS], "test_texts": sample, "source": source,
            "split": "test"}


def _chart(path: Path, rows: list[dict], label: str, report: Progress) -> str | None:
    """Draw chart.png; None when drawn, else why not (the README says how to add it)."""
    report(0.75, "drawing the chart")
    try:
        from .dashboard.report import chart_png

        chart_png(rows, path, caption=label.split(";")[0][:100])
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
        raise LabError(f"cannot upload to the Hugging Face Hub (HF_HUB_OFFLINE is set): offline? publish to a "
                       f"folder or zip and upload it later")
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


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


# ------------------------------------------------------------------------------------------ model cards, README

def hub_model_id(ref: str | None) -> str | None:
    """The Hub id a model reference stands for (embedded models have one), or None for a local folder."""
    from .sources import HUB_ID

    if not ref:
        return None
    if ref in BASE_MODELS:
        return BASE_MODELS[ref]
    if ref.startswith(("embedded:", ".", "/", "~")) or ref.endswith("/") or Path(ref).expanduser().exists():
        return None
    return ref if HUB_ID.match(ref) else None


def hub_dataset_id(ref: str | None) -> str | None:
    """The Hub data set a data reference stands for, or None (local files, embedded data, a bare relative name)."""
    from .data import FORMATS, HUB_ALIASES
    from .sources import HUB_ID

    if not ref:
        return None
    if ref in HUB_ALIASES:
        return HUB_ALIASES[ref][0]
    name = ref.partition(":")[0] if not ref.startswith("embedded:") else ""
    if (not name or "/" not in name or name.startswith((".", "/", "~")) or Path(name).suffix.lower() in FORMATS
            or Path(ref).expanduser().exists() or not HUB_ID.match(name)):
        return None
    return name


def root_model(name: str, rows: list[dict]) -> str | None:
    """The model reference a variant's weights started from: its own source, else its parent's, up the chain."""
    from .bundle import read_meta

    by_name, seen = {r["name"]: r for r in rows}, set()
    while name in by_name and name not in seen:
        seen.add(name)
        try:
            meta = read_meta(by_name[name]["bundle"])
        except (LabError, OSError, TypeError):
            return None
        step = meta.get("step") or {}
        source = meta.get("source") or (step.get("model") if step.get("stage") == "student" else None)
        if source:
            return source
        name = by_name[name]["parent"]
    return None


def _yaml(value, indent: int = 0) -> str:
    """A tiny YAML writer for card metadata: dicts, lists and scalars (strings JSON-quoted, valid YAML)."""
    pad = " " * indent
    if isinstance(value, dict):
        return "".join(f"{pad}{k}:" + (f"\n{_yaml(v, indent + 2)}" if isinstance(v, (dict, list)) and v
                                       else f" {_scalar(v)}\n") for k, v in value.items())
    out = ""
    for item in value:
        body = _yaml(item, indent + 2) if isinstance(item, (dict, list)) else f"{pad}  {_scalar(item)}\n"
        out += f"{pad}- {body.lstrip()}"
    return out


def _scalar(v) -> str:
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    return json.dumps(v, ensure_ascii=False) if isinstance(v, str) else repr(v)


def card_metadata(row: dict, rows: list[dict], recipe: dict) -> dict:
    """The YAML front matter of a bundle's model card (Hub conventions)."""
    from .bundle import read_meta

    weights = read_meta(row["bundle"]).get("weights", {})
    fmt = weights.get("format", "hf")
    meta: dict = {"pipeline_tag": "text-classification"}
    # transformers reads only plain HF weights; the lab's int8 / sparse / pruned encoding needs the lab's loader, so
    # naming transformers there would put a snippet on the Hub page that fails.
    meta["library_name"] = {"hf": "transformers", "onnx": "onnx"}.get(fmt, "bert-compression-lab")
    meta["tags"] = [*CARD_TAGS, "compression-lab", row["kind"]] + ([row["method"]] if row.get("method") else [])
    base = hub_model_id(root_model(row["name"], rows))
    if base:
        meta["base_model"] = base
    data_ref = (recipe.get("data") or {}).get("source")
    dataset = hub_dataset_id(data_ref)
    if dataset:
        meta["datasets"] = [dataset]
    metrics = [{"type": k, "value": round(row[k], 4), "name": n}
               for k, n in (("accuracy", "Accuracy"), ("f1", "Macro F1")) if row.get(k) is not None]
    if metrics:
        meta["model-index"] = [{"name": row["name"], "results": [{
            "task": {"type": "text-classification", "name": "Text Classification"},
            "dataset": {"name": shown_ref(data_ref), "type": dataset or "custom", "split": "test"},
            "metrics": metrics}]}]
    return meta


def _provenance(p: dict | None) -> str:
    if not p:
        return "not benchmarked"
    try:
        flags = ", ".join(k for k, v in p["cpu"]["flags"].items() if v) or "none of interest"
        versions = ", ".join(f"{k} {v}" for k, v in p.get("versions", {}).items() if v)
        lengths = p.get("sequence_length", {})
        return (f"{p['cpu']['model']} ({flags}), {p['threads']} threads; {versions}; batch 1 on {p['samples']} "
                f"{p.get('split', 'test')} sentences (tokens mean {lengths.get('mean')}, p95 {lengths.get('p95')}) × "
                f"{p['repeats']} interleaved rounds; throughput at batch {p['batch_sizes']['throughput']}; "
                f"measured {p['measured_at']}")
    except (KeyError, TypeError, AttributeError):
        return "recorded, but in a form this version cannot summarise (see results.json)"


def shown_ref(ref: str | None) -> str:
    """A model or data reference as a published page shows it: a local path only by its last part (the build
    machine's folders mean nothing elsewhere and may name a person)."""
    if not ref:
        return "unknown"
    local = ref.startswith((".", "/", "~")) or Path(ref).expanduser().exists()
    return f"a local folder or file ({Path(ref).name})" if local and not ref.startswith("embedded:") else ref


def _fmt(value, spec: str, scale: float = 1.0, none: str = "–") -> str:
    return format(value * scale, spec) if isinstance(value, (int, float)) else none


def model_card(row: dict, rows: list[dict], recipe: dict) -> str:
    """A bundle's README.md: Hub metadata, then what it is, how to load it, its accuracy, size and speed."""
    from .bundle import read_meta

    meta = card_metadata(row, rows, recipe)
    bundle = read_meta(row["bundle"])
    fmt = bundle.get("weights", {}).get("format", "hf")
    lo, hi = row.get("accuracy_ci") or [None, None]
    method = f" ({row['method']})" if row.get("method") else ""
    parent = f"`{row['parent']}`" if row.get("parent") else "none (it is the reference every ratio uses)"
    lines = [f"---\n{_yaml(meta)}---", f"# {row['name']}", "",
             f"A **{row['kind']}** variant{method} from run {row['run']} "
             f"of the BERT Compression Lab recipe `{recipe.get('name')}`. Parent: {parent}. Weights started from "
             f"{_code(shown_ref(root_model(row['name'], rows)))}. Labels: {', '.join(bundle.get('labels', []))}; "
             f"texts are truncated to {bundle.get('max_length')} tokens.", "",
             f"## Accuracy (test split of {_code(shown_ref((recipe.get('data') or {}).get('source')))})", "",
             f"accuracy {_fmt(row.get('accuracy'), '.1%')} (95 % CI {_fmt(lo, '.1%')}–{_fmt(hi, '.1%')}), "
             f"macro-F1 {_fmt(row.get('f1'), '.3f')}, agreement with the teacher {_fmt(row.get('agreement'), '.1%')}, "
             f"ECE {_fmt(row.get('ece'), '.3f')}.", "",
             "## Size and speed", "",
             f"{_fmt(row.get('size_mb'), '.1f')} MB on disk, {_fmt(row.get('params'), '.2f', 1e-6)} M parameters "
             f"({_fmt(row.get('nonzero_params'), '.2f', 1e-6)} M non-zero); "
             f"p50 {_fmt(row.get('latency_p50_ms'), '.2f')} ms, p95 {_fmt(row.get('latency_p95_ms'), '.2f')} ms at "
             f"batch 1. Measured on: {_provenance(row.get('provenance'))}.", "",
             *[f"> ⚠ {w}\n" for w in row.get("warnings") or []],
             "## How to load", "", _load_snippet(row["name"], fmt), ""]
    return "\n".join(lines)


def _code(text: str) -> str:
    return text if text.startswith("a local") else f"`{text}`"


def _load_snippet(name: str, fmt: str) -> str:
    common = ("```python\nfrom compression.bundle import load_bundle  # the BERT Compression Lab (requirements.txt)"
              f"\n\nbundle = load_bundle(\"bundles/{name}\")\n"
              "print(bundle.predict([\"a gripping, beautifully acted film\"]))\n```")
    if fmt == "hf":
        return (common + "\n\nIts weights are plain Hugging Face safetensors, so `transformers` reads them too:\n\n"
                "```python\nfrom transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
                f"model = AutoModelForSequenceClassification.from_pretrained(\"bundles/{name}\",\n"
                "                                                           trust_remote_code=False)\n```")
    if fmt == "onnx":
        return common + "\n\n`model.onnx` runs in ONNX Runtime alone; the tokenizer files are beside it."
    return (common + "\n\n`weights.safetensors` holds the lab's encoding (int8 weights with scales, bit-mask sparse "
            "tensors or the shapes of a structurally pruned model): `transformers` alone cannot rebuild it.")


def run_readme(rows: list[dict], recipe: dict, label: str, examples: dict, chart_note: str | None,
               origin: str | None = None) -> str:
    """The published run's README.md: what it is, the results, where the speed figures came from, how to serve it."""
    from .dashboard.tables import markdown

    # The Hub reads only the top README's metadata, so the run's base model and data set are named here too.
    meta = {"pipeline_tag": "text-classification", "tags": [*CARD_TAGS, "compression-lab"]}
    if hub_model_id(origin):
        meta["base_model"] = hub_model_id(origin)
    if hub_dataset_id((recipe.get("data") or {}).get("source")):
        meta["datasets"] = [hub_dataset_id((recipe.get("data") or {}).get("source"))]
    front = _yaml(meta)
    teacher = rows[0]
    chart = ("![accuracy vs p50 latency, bubble = bundle size](chart.png)" if chart_note is None else
             f"No chart here ({chart_note}). To add one, install Playwright and Chromium "
             f"(`pip install -r requirements-dev.txt`, `apt-get install chromium`) and publish again.")
    speed = {_provenance(r.get("provenance")): [] for r in rows}
    for r in rows:
        speed[_provenance(r.get("provenance"))].append(r["name"])
    data = _code(shown_ref((recipe.get("data") or {}).get("source")))
    kinds = ", ".join(dict.fromkeys(r["kind"] for r in rows[1:])) or "none yet"
    lines = [f"---\n{front}---", f"# {label}", "",
             f"Run {teacher['run']} of the BERT Compression Lab recipe `{recipe.get('name')}`: the teacher "
             f"(`{teacher['name']}`, from {_code(shown_ref(origin))}) and "
             f"{len(rows) - 1} compressed {'variant' if len(rows) == 2 else 'variants'} of it ({kinds}), each a "
             f"self-contained bundle under `bundles/`, all measured together on the test split of {data}. Ratios "
             f"are against the teacher.", "", "## Results", "", markdown(rows), "", chart, "",
             "## Where the speed figures come from", "",
             *[f"- {', '.join(names)}: {text}" for text, names in speed.items()], "",
             "## Variants", "",
             *[f"- [{r['name']}](bundles/{r['name']}/README.md): {r['kind']}"
               + (f" of {r['parent']}" if r.get("parent") else "") for r in rows], "",
             "## Serve it", "",
             "Nothing is built and nothing is written into this folder; every bundle is checked against "
             "`manifest.json` before it is served.", "",
             "```bash", "python app.py --published DIR                      # this folder, or a .zip of it",
             "COMPRESSION_LAB_PUBLISHED=hub:USER/NAME python app.py   # e.g. in a Hugging Face Space",
             "python -m compression list --published DIR",
             f"python -m compression predict {teacher['name']} \"a gripping film\" --published DIR", "```", ""]
    if examples.get("note"):
        lines += [f"Example texts: {examples['note']}.", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- reading

def open_published(ref: str, cache: Path | None = None) -> "PublishedRun":
    """Open a published run: a folder (read in place, never written to), a ``.zip`` file (extracted once into the
    cache, checked member by member) or ``hub:USER/NAME`` (downloaded into the cache: data, docs and safetensors /
    ONNX weights only). ``cache`` defaults to ``sources.cache_dir() / "published"``."""
    if cache is None:
        from .sources import cache_dir

        cache = cache_dir() / "published"
    ref = str(ref).strip()
    if ref.startswith(HUB_PREFIX):
        return PublishedRun(_download_hub(ref[len(HUB_PREFIX):], Path(cache)))
    path = Path(ref).expanduser()
    if path.is_dir():
        return PublishedRun(path)
    if path.is_file():
        return PublishedRun(_extract_zip(path, Path(cache)))
    raise LabError(f"published run {ref} not found: give its folder, a .zip of it, or hub:USER/NAME")


def _download_hub(repo: str, cache: Path) -> Path:
    if not HUB_REPO.match(repo):
        raise LabError(f"'{HUB_PREFIX}{repo}' is not a Hub repo: write hub:USER/NAME")
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo, allow_patterns=HUB_PATTERNS, cache_dir=str(cache / "hub"),
                                   local_files_only=_offline())
    except Exception as err:  # offline, missing repo, no access: all one line for the user
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        if _offline():
            reason = f"HF_HUB_OFFLINE is set and no copy is cached in {cache / 'hub'}"
        raise LabError(f"cannot download {HUB_PREFIX}{repo} from the Hugging Face Hub ({reason}): offline? open a "
                       f"folder or zip copy of the published run instead") from err
    return Path(folder)


def _extract_zip(path: Path, cache: Path) -> Path:
    """Extract a published zip once into ``cache/<sha256[:16]>`` (temp folder + rename); reuse it afterwards."""
    import zipfile

    from .bundle import _sha256

    st = path.stat()
    target = cache / _sha256(str(path.resolve()), st.st_size, st.st_mtime_ns)[:16]
    if not target.is_dir():
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as err:
            raise LabError(f"{path} is not a zip file ({err}): give a published run's folder, .zip or hub:USER/NAME") \
                from None
        with zf:
            members = _safe_members(zf, path)
            cache.mkdir(parents=True, exist_ok=True)
            tmp = cache / f".{target.name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                _extract_members(zf, members, tmp, path)
                try:
                    os.replace(tmp, target)
                except OSError:  # another process extracted the same zip meanwhile: use theirs
                    if not target.is_dir():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return _run_root(target, path)


def _safe_members(zf, path: Path) -> list:
    """The members to extract; one clear error for anything that could write outside the folder or fill the disk."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise LabError(f"{path} has {len(infos):,} members (at most {MAX_MEMBERS:,}): not a published run")
    total, seen = 0, set()
    for info in infos:
        name = info.filename
        if name.rstrip("/") in seen:
            raise LabError(f"{path} holds {name!r} twice: refused, nothing extracted")
        seen.add(name.rstrip("/"))
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts or "\\" in name \
                or "\x00" in name:
            raise LabError(f"{path} holds a member with an unsafe path ({name!r}): refused, nothing extracted")
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            what = "a symbolic link" if kind == stat.S_IFLNK else "a special file"
            raise LabError(f"{path} holds {what} ({name!r}): refused, nothing extracted")
        total += info.file_size
        if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise LabError(f"{path}: member {name!r} expands {info.file_size / max(info.compress_size, 1):,.0f}-fold "
                           f"to {info.file_size:,} bytes (a zip bomb?): refused, nothing extracted")
    if total > MAX_TOTAL_BYTES:
        raise LabError(f"{path} would expand to {total:,} bytes (at most {MAX_TOTAL_BYTES:,}): refused, nothing "
                       f"extracted")
    return infos


def _extract_members(zf, members: list, dest: Path, path: Path) -> None:
    """Stream each member to its place inside ``dest``, never trusting the sizes the zip declares."""
    dest.mkdir(parents=True)
    base = dest.resolve()
    written = 0
    for info in members:
        out = (dest / info.filename).resolve()
        if out != base and base not in out.parents:
            raise LabError(f"{path} holds a member that would land outside its folder ({info.filename!r}): refused")
        if info.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(out, "xb") as dst:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > MAX_TOTAL_BYTES:
                    raise LabError(f"{path} expands past {MAX_TOTAL_BYTES:,} bytes: refused")
                dst.write(chunk)


def _run_root(folder: Path, origin: Path) -> Path:
    """The folder holding manifest.json: the extraction folder, or its only subfolder (a zip of the folder)."""
    if (folder / MANIFEST).is_file():
        return folder
    inner = [p for p in folder.iterdir() if p.is_dir()]
    if len(inner) == 1 and (inner[0] / MANIFEST).is_file():
        return inner[0]
    raise LabError(f"{origin} is not a published run (no {MANIFEST} inside)")


def _read_json(root: Path, name: str, required: bool = True):
    path = root / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if not required:
            return None
        raise LabError(f"{root} is not a published run: {name} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        if not required:
            return None
        raise LabError(f"published run {root} is broken: {name} is not valid JSON ({err})") from None


class PublishedRun:
    """A published run, read-only: its rows, examples and bundle folders, each bundle checked against the manifest.

    Nothing here writes inside ``root``. A bundle with a missing, changed, added, code or pickle file is reported
    broken (``problem``) and refused (``bundle_folder``); the other variants stay served.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).absolute()
        self.manifest = _read_json(self.root, MANIFEST)
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != FORMAT:
            raise LabError(f"{self.root} is not a published run ({MANIFEST} is not a {FORMAT} manifest)")
        version = self.manifest.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise LabError(f"published run {self.root} has format version {version!r}; this lab reads up to "
                           f"{VERSION}: upgrade the lab")
        self.files: dict[str, str] = self.manifest.get("files") or {}
        if not isinstance(self.files, dict) or not all(isinstance(v, str) for v in self.files.values()):
            raise LabError(f"published run {self.root} is broken: {MANIFEST} lists no file hashes")
        self._check_top_file(RESULTS)
        results = _read_json(self.root, RESULTS)
        rows = results.get("variants") if isinstance(results, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) and _safe_name(r.get("name")) for r in rows):
            raise LabError(f"published run {self.root} is broken: {RESULTS} has no valid variant list")
        self._rows = rows
        self.run = results.get("run", self.manifest.get("run"))
        self.label: str = results.get("label") or (f"published run {self.run} of recipe "
                                                   f"{self.manifest.get('recipe')}")
        examples = _read_json(self.root, EXAMPLES, required=False) or {}
        self.examples: list[str] = [t for t in examples.get("texts", []) if isinstance(t, str)]
        self.test_texts: list[str] = [t for t in examples.get("test_texts", []) if isinstance(t, str)]
        self.test_split: str = examples.get("split", "test")
        self.recipe: dict = _read_json(self.root, RECIPE, required=False) or {}

    def _check_top_file(self, name: str) -> None:
        from .bundle import _sha256

        path = self.root / name
        if name in self.files and path.is_file():
            st = path.stat()
            if _sha256(str(path), st.st_size, st.st_mtime_ns) != self.files[name]:
                raise LabError(f"published run {self.root} is broken: {name} changed since it was published "
                               f"(SHA-256 mismatch); publish it again")

    @property
    def names(self) -> list[str]:
        return [r["name"] for r in self._rows]

    def rows(self) -> list[dict]:
        """results.json's rows, "bundle" an absolute path inside root and "status" checked now."""
        out = []
        for row in self._rows:
            problem = self.problem(row["name"])
            out.append({**row, "bundle": str(self.root / "bundles" / row["name"]),
                        "status": f"broken: {problem}" if problem else "ok"})
        return out

    def problem(self, name: str) -> str | None:
        """Why variant ``name`` cannot be trusted, or None when every file matches the manifest."""
        from .bundle import _sha256, bundle_problem

        if name not in self.names:
            raise LabError(f"the published run has no variant {name!r} (known: {', '.join(self.names)})")
        folder = self.root / "bundles" / name
        if not folder.is_dir():
            return f"bundles/{name} is missing"
        prefix = f"bundles/{name}/"
        listed = {k: v for k, v in self.files.items() if k.startswith(prefix) and k != prefix + CARD}
        found = {p.relative_to(self.root).as_posix(): p for p in folder.rglob("*") if p.is_file() or p.is_symlink()}
        found.pop(prefix + CARD, None)
        unsafe = sorted(k for k in found if k.lower().endswith(UNSAFE_SUFFIXES))
        missing = sorted(set(listed) - set(found))
        extra = sorted(set(found) - set(listed))
        if unsafe:
            return f"{', '.join(unsafe[:3])} is code or a pickle, which a published run never loads"
        if missing:
            return f"{', '.join(missing[:3])} missing"
        if extra:
            return f"{', '.join(extra[:3])} not in the manifest (added after publishing)"
        changed = []
        for rel in sorted(listed):
            try:
                st = found[rel].stat()
                digest = _sha256(str(found[rel]), st.st_size, st.st_mtime_ns)
            except OSError as err:
                return f"{rel} cannot be read ({err.strerror or err})"
            if digest != listed[rel]:
                changed.append(rel)
        if changed:
            return f"{', '.join(changed[:3])} changed since publishing (SHA-256 mismatch)"
        return bundle_problem(folder)

    def bundle_folder(self, name: str) -> Path:
        """The folder of a healthy variant; LabError when unknown or broken."""
        problem = self.problem(name)
        if problem:
            raise LabError(f"variant {name} of the published run is broken: {problem}")
        return self.root / "bundles" / name

    def __repr__(self) -> str:
        return f"PublishedRun({str(self.root)!r}, run={self.run!r}, variants={self.names})"


def _safe_name(name) -> bool:
    from .config import NAME

    return isinstance(name, str) and bool(NAME.match(name)) and name not in (".", "..")
