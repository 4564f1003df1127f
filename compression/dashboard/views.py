"""Pure pieces of the dashboard: input parsing, the Playground's rows, the Lab's recipe choices. No Gradio here, so
tests and the CLI import them without a web stack."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

from ..errors import LabError

MAX_TEXT_CHARS = 5_000          # per text in the Playground; longer input is truncated, and the UI says so
MAX_BATCH_LINES = 500           # texts per batch check
MAX_UPLOAD_BYTES = 1_000_000    # batch-check CSV upload
TEACHERS = ["embedded:mpnet-base", "embedded:minilm-l6"]
DATA_SOURCES = ["embedded:rotten-tomatoes"]  # the app never reads a data path a visitor types
PROJECT_DIR = Path(__file__).resolve().parents[2]
RECIPES_DIR = PROJECT_DIR / "recipes"
ASSETS_DIR = PROJECT_DIR / "assets"
def examples() -> list[str]:
    path = ASSETS_DIR / "examples.txt"
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def reference_rows() -> tuple[list[dict], str]:
    """Rows of the project's own published run (assets/reference/*.json), to show before local results exist."""
    # The headline SST-2 result first, then any other published run.
    for path in sorted((ASSETS_DIR / "reference").glob("*.json"), key=lambda p: (p.stem != "sst2", p.name)):
        data = json.loads(path.read_text(encoding="utf-8"))
        return data["variants"], data.get("label", path.stem)
    return [], ""


def teacher_first(rows: list[dict]) -> list[dict]:
    """The teacher answers first in the Playground: it is the reference every other row is compared with."""
    return sorted(rows, key=lambda r: r.get("kind") != "teacher")


def _ratios(row: dict, teacher: dict | None) -> str:
    """Speed-up and size against the teacher, from the run's own benchmark; blank until it was measured."""
    if teacher is None or row is teacher:
        return "reference"
    parts = []
    for key, better, worse in (("latency_p50_ms", "faster", "slower"), ("size_mb", "smaller", "larger")):
        if row.get(key) and teacher.get(key):
            ratio = teacher[key] / row[key]
            parts.append(f"{ratio:.1f}x {better}" if ratio >= 1 else f"{1 / ratio:.1f}x {worse}")
    return ", ".join(parts) or "not benchmarked yet"


def predictions_html(results: list[dict], rows: list[dict] | None = None, pending: int = 0) -> str:
    """Playground results, one row per variant: what it is (technique, parent), its answer, this request's latency,
    its measured speed-up and size against the teacher; rows that disagree with the teacher are highlighted.
    ``results``: dicts with name, label, confidence, latency_ms (teacher first); ``pending``: rows still coming."""
    from . import tables

    by_name = {r["name"]: r for r in rows or []}
    teacher_row = next((r for r in rows or [] if r.get("kind") == "teacher"), None)
    teacher = teacher_row["name"] if teacher_row else None
    df = tables.predictions_table(results, teacher)
    body = []
    for (_, p), result in zip(df.iterrows(), results):
        row = by_name.get(result["name"], {})
        made = tables.technique(row) if row else ""
        parent = f" of {html.escape(row['parent'])}" if row.get("parent") else ""
        disagree = p["agrees with teacher"] == "NO"
        body.append(
            f"<tr class='{'disagree' if disagree else ''}'><td><b>{html.escape(p['variant'])}</b>"
            f"<div class='what'>{html.escape(made)}{parent}</div></td>"
            f"<td><b>{html.escape(str(p['label']))}</b></td><td>{p['confidence']:.1%}</td>"
            f"<td>{p['latency ms']:.1f}</td><td>{html.escape(_ratios(row, teacher_row)) if row else ''}</td>"
            f"<td>{'⚠ disagrees' if disagree else p['agrees with teacher']}</td></tr>")
    if pending:
        body.append(f"<tr class='pending'><td colspan='6'>… {pending} more variant(s) answering</td></tr>")
    return ("<table class='preds'><thead><tr><th>variant</th><th>label</th><th>confidence</th>"
            "<th>latency ms (this request)</th><th>measured vs teacher</th><th>vs teacher</th></tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def parse_batch(text: str, upload: str | None) -> list[str]:
    """Texts for a batch check: pasted lines, or the text column of an uploaded CSV (UTF-8, header row)."""
    texts = _read_upload(upload) if upload else [line.strip() for line in (text or "").splitlines()]
    texts = [t[:MAX_TEXT_CHARS] for t in texts if t]
    if not texts:
        raise LabError("no texts: paste one per line, or upload a CSV with a text column")
    if len(texts) > MAX_BATCH_LINES:
        raise LabError(f"{len(texts)} texts: a batch check takes at most {MAX_BATCH_LINES}")
    return texts


def _read_upload(upload: str) -> list[str]:
    path = Path(upload)
    if path.stat().st_size > MAX_UPLOAD_BYTES:
        raise LabError(f"upload is larger than {MAX_UPLOAD_BYTES // 1_000_000} MB")
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LabError("upload is not UTF-8 text: save the CSV as UTF-8") from None
    if "\x00" in content:
        raise LabError("upload contains NUL bytes: is it really a CSV?")
    try:
        dialect = csv.Sniffer().sniff(content[:4096], delimiters=",\t;")
    except csv.Error:
        dialect = csv.excel
    try:
        reader = csv.DictReader(io.StringIO(content), dialect=dialect)
        columns = [c for c in (reader.fieldnames or []) if c]
        column = next((c for c in columns if c.strip().lower() in ("text", "sentence", "review", "content")), None)
        if column is None:
            raise LabError(f"the CSV needs a header with a text column (text, sentence, review or content); "
                           f"found: {', '.join(columns) or 'no header'}")
        rows = list(reader)
    except csv.Error as err:
        raise LabError(f"the CSV cannot be read: {err}") from None
    extra = next((i for i, row in enumerate(rows, start=2) if None in row), None)
    if extra is not None:
        raise LabError(f"line {extra} has more fields than the header: quote texts that contain the delimiter")
    return [(row.get(column) or "").strip() for row in rows]


def app_recipes() -> list[str]:
    """Recipes a visitor may start: those on the embedded data only (no server paths, no hour-long builds of
    data the app does not ship). Others run from the command line."""
    from ..config import load_recipe

    allowed = []
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        try:
            if load_recipe(path).data.source.startswith("embedded:"):
                allowed.append(path.name)
        except (ValueError, LabError, OSError):
            continue  # a broken recipe file is not offered
    return allowed


def lab_choices(stage: str) -> dict[str, object]:
    """The Lab's checkbox labels for a stage's registered techniques (those that offer one), in registry order."""
    from .. import techniques

    return {t.lab.label: t for t in techniques.load().values() if t.stage == stage and t.lab is not None}


def student_choices() -> list[str]:
    return list(lab_choices("student"))


def technique_choices() -> list[str]:
    return [*lab_choices("quantize"), *lab_choices("prune")]


def lab_recipe(teacher: str, data: str, train_samples: int, students: list[str], techniques: list[str]) -> dict:
    """A recipe (as plain data) from the Lab tab's choices; validated by ``from_dict`` like any recipe file."""
    recipe = {"name": "lab", "data": {"source": data, "max_train_samples": int(train_samples),
                                      "max_eval_samples": 400},
              "teacher": {"model": teacher, "max_length": 64,
                          "train": {"epochs": 1, "batch_size": 16, "learning_rate": 3e-5}},
              "students": [], "prune": [], "quantize": []}
    offered = lab_choices("student")
    unknown = [x for x in students if x not in offered]
    if unknown:
        raise LabError(f"unknown student choice {unknown[0]!r}: choose from the list offered")
    for label in students:
        recipe["students"].append(dict(offered[label].lab.step("teacher", teacher), max_length=64,
                                       train={"epochs": 3, "batch_size": 32, "learning_rate": 1e-4}))
    base = recipe["students"][0]["name"] if recipe["students"] else "teacher"
    steps = {**lab_choices("prune"), **lab_choices("quantize")}
    for label in techniques:
        if label not in steps:
            raise LabError(f"unknown technique {label!r}: choose from the list offered")
        recipe[steps[label].stage].append(steps[label].lab.step(base, teacher))
    return recipe
