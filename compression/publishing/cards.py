"""Model cards and the README of a published run: what a person reads on the Hub or in the folder.

Pure text from the rows of a run, its recipe and the bundles' metadata; nothing here writes a file.
"""

from __future__ import annotations

import json
from pathlib import Path

from compression.bundle.meta import read_meta
from compression.core.errors import LabError
from compression.data.loading import FORMATS, HUB_ALIASES
from compression.data.sources import HUB_ID

BASE_MODELS = {"embedded:mpnet-base": "sentence-transformers/all-mpnet-base-v2",
               "embedded:minilm-l6": "sentence-transformers/all-MiniLM-L6-v2"}
CARD_TAGS = ("text-classification", "model-compression", "knowledge-distillation", "quantization", "pruning")


def hub_model_id(ref: str | None) -> str | None:
    """The Hub id a model reference stands for (embedded models have one), or None for a local folder."""

    if not ref:
        return None
    if ref in BASE_MODELS:
        return BASE_MODELS[ref]
    if ref.startswith(("embedded:", ".", "/", "~")) or ref.endswith("/") or Path(ref).expanduser().exists():
        return None
    return ref if HUB_ID.match(ref) else None


def hub_dataset_id(ref: str | None) -> str | None:
    """The Hub data set a data reference stands for, or None (local files, embedded data, a bare relative name)."""

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
        inputs = "pairs" if p.get("inputs") == "text pairs" else "sentences"
        return (f"{p['cpu']['model']} ({flags}), {p['threads']} threads; {versions}; batch 1 on {p['samples']} "
                f"{p.get('split', 'test')} {inputs} (tokens mean {lengths.get('mean')}, p95 {lengths.get('p95')}) × "
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
             f"{_inputs(bundle.get('pair'), bundle.get('max_length'))}.", "",
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
             "## How to load", "",
             _load_snippet(row["name"], fmt, bundle.get("pair"), bundle.get("pooling", "first")), ""]
    return "\n".join(lines)


def _inputs(pair: list[str] | None, max_length) -> str:
    """What a bundle reads, for its card: single texts, or pairs of texts (a sentence-pair task)."""
    if not pair:
        return f"texts are truncated to {max_length} tokens"
    return (f"it reads **pairs of texts** ({' + '.join(f'`{n}`' for n in pair)}), encoded together and truncated "
            f"to {max_length} tokens in all (the longer text is cut first)")


def _pair_note(pair: list[str] | None) -> str:
    return (f" A sentence-pair task: every variant reads two texts at once "
            f"({' + '.join(f'`{n}`' for n in pair)}).") if pair else ""


def _predict_args(pair: list[str] | None) -> str:
    return '--pair "He left at noon." "He departed at 12."' if pair else '"a gripping film"'


def _code(text: str) -> str:
    return text if text.startswith("a local") else f"`{text}`"


def _load_snippet(name: str, fmt: str, pair: list[str] | None = None, pooling: str = "first") -> str:
    example = ('("The company said profits rose.", "Profits went up, the company said.")' if pair
               else '"a gripping, beautifully acted film"')
    common = ("```python\nfrom compression.bundle import load_bundle  # the BERT Compression Lab (requirements.txt)"
              f"\n\nbundle = load_bundle(\"bundles/{name}\")\n"
              f"print(bundle.predict([{example}]))" + ("  # one (first, second) tuple per pair" if pair else "")
              + "\n```")
    if fmt == "hf" and pooling == "mean":
        return (common + "\n\nIts head reads the **mean** of the tokens' last states (`lab_pooling` in "
                "`config.json`): `transformers`' `AutoModelForSequenceClassification` would read the first token "
                "instead and answer wrongly, so load it with the lab.")
    if fmt == "hf":
        tokenize = ("\n\nGive it both texts of a pair at once: `tokenizer(first, second, return_tensors=\"pt\")`."
                    if pair else "")
        return (common + "\n\nIts weights are plain Hugging Face safetensors, so `transformers` reads them too:\n\n"
                "```python\nfrom transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
                f"model = AutoModelForSequenceClassification.from_pretrained(\"bundles/{name}\",\n"
                "                                                           trust_remote_code=False)\n```" + tokenize)
    if fmt == "onnx":
        return common + "\n\n`model.onnx` runs in ONNX Runtime alone; the tokenizer files are beside it."
    return (common + "\n\n`weights.safetensors` holds the lab's encoding (int8 weights with scales, bit-mask sparse "
            "tensors or the shapes of a structurally pruned model): `transformers` alone cannot rebuild it.")


def run_readme(rows: list[dict], recipe: dict, label: str, examples: dict, chart_note: str | None,
               origin: str | None = None) -> str:
    """The published run's README.md: what it is, the results, where the speed figures came from, how to serve it."""
    from compression.presentation.tables import markdown

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
             f"are against the teacher.{_pair_note(examples.get('pair'))}", "", "## Results", "", markdown(rows), "",
             chart, "",
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
             f"python -m compression predict {teacher['name']} {_predict_args(examples.get('pair'))} --published DIR",
             "```", ""]
    if examples.get("note"):
        lines += [f"Example texts: {examples['note']}.", ""]
    return "\n".join(lines)

