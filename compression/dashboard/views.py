"""Pure pieces of the dashboard: input parsing, the Playground's rows, the Lab's recipe choices. No Gradio here, so
tests and the CLI import them without a web stack."""

from __future__ import annotations

import csv
import html
import io
import json
import random
import re
from pathlib import Path

from compression.core import registry as techniques
from compression.core.config import load_recipe
from compression.core.errors import LabError
from compression.core.texts import Text, char_length, of_kind

MAX_TEXT_CHARS = 5_000          # per text in the Playground; longer input is truncated, and the UI says so
MAX_BATCH_LINES = 500           # texts per batch check
MAX_UPLOAD_BYTES = 1_000_000    # batch-check CSV upload
TEACHERS = ["embedded:mpnet-base", "embedded:minilm-l6"]
DATA_SOURCES = ["embedded:rotten-tomatoes"]  # the app never reads a data path a visitor types
PROJECT_DIR = Path(__file__).resolve().parents[2]
RECIPES_DIR = PROJECT_DIR / "recipes"
ASSETS_DIR = PROJECT_DIR / "assets"
EXAMPLES_SHOWN, EXAMPLE_MAX_CHARS = 8, 200  # Playground examples of a pair task, from the run's test split
PAIR_LINE_SEPARATORS = ("\t", "‖")  # a pasted pair: first text, a tab (or ‖, as the lab writes pairs), second


def examples() -> list[str]:
    path = ASSETS_DIR / "examples.txt"
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def readable(column: str) -> str:
    """A column name as a label for people: ``sentence1`` -> ``Sentence 1``, ``question_2`` -> ``Question 2``."""
    words = re.sub(r"(?<=[^\W\d_]{2})(?=\d)", " ", column.replace("_", " ")).strip()
    return words[:1].upper() + words[1:] if words else column


def input_hints(pair: tuple[str, str] | None) -> dict:
    """Labels of the Playground's and Batch check's inputs: one text box, or (a pair task) one per column."""
    if not pair:
        return {"pair": False, "first": "Text", "first_hint": "Type a sentence to classify with every variant",
                "second": "Second input", "second_hint": "",
                "batch": f"Texts, one per line (up to {MAX_BATCH_LINES})",
                "upload": "…or a UTF-8 CSV with a text column (≤ 1 MB)"}
    first, second = readable(pair[0]), readable(pair[1])
    return {"pair": True, "first": first, "first_hint": f"The pair's first text ({pair[0]})",
            "second": second, "second_hint": f"The pair's second text ({pair[1]})",
            "batch": f"Pairs, one per line: {first}, a tab (or ‖), then {second} (up to {MAX_BATCH_LINES})",
            "upload": f"…or a UTF-8 CSV with columns {pair[0]} and {pair[1]} (else its first two columns; ≤ 1 MB)"}


def pick_examples(items, pairs: bool, shuffle: bool = False) -> list[Text]:
    """Up to ``EXAMPLES_SHOWN`` short examples of the run's kind (pairs or single texts) from ``items``; items of
    the other kind, or not texts at all, are dropped. ``shuffle``: a fixed random sample rather than the first."""
    texts = of_kind(items, pairs)
    if shuffle:
        texts = random.Random(0).sample(texts, len(texts))
    short = [t for t in texts if char_length(t) <= EXAMPLE_MAX_CHARS] or texts
    return short[:EXAMPLES_SHOWN]


def example_samples(examples: list, pair: tuple[str, str] | None) -> tuple[list[list[str]], list[list[str]]]:
    """The Playground's two example lists as dataset samples: (single texts, pairs). Only the run's kind is
    filled (pairs for a pair task, else single texts); the other list is empty, and hidden."""
    if pair:
        return [], [[t[0], t[1]] for t in of_kind(examples, pairs=True)]
    return [[t] for t in of_kind(examples, pairs=False)], []


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
    from compression.presentation import tables

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


def parse_batch(text: str, upload: str | None, pair: tuple[str, str] | None = None) -> list[Text]:
    """Texts for a batch check: pasted lines, or the text column of an uploaded CSV (UTF-8, header row). For a pair
    task (``pair``: its column names), pairs: pasted ``first<TAB>second`` lines, or a CSV's two text columns."""
    if pair:
        texts = _upload_pairs(upload, pair) if upload else _pasted_pairs(text)
    else:
        texts = _read_upload(upload) if upload else [line.strip() for line in (text or "").splitlines()]
        texts = [t[:MAX_TEXT_CHARS] for t in texts if t]
    if not texts:
        what = "pairs: paste one per line (two texts split by a tab), or upload a CSV with two text columns" if pair \
            else "texts: paste one per line, or upload a CSV with a text column"
        raise LabError(f"no {what}")
    if len(texts) > MAX_BATCH_LINES:
        raise LabError(f"{len(texts)} texts: a batch check takes at most {MAX_BATCH_LINES}")
    return texts


def _pair(first: str, second: str, where: str) -> tuple[str, str] | None:
    """A pair from two cells, each clipped; None when both are empty (a blank line); LabError when one is."""
    first, second = (first or "").strip()[:MAX_TEXT_CHARS], (second or "").strip()[:MAX_TEXT_CHARS]
    if not first and not second:
        return None
    if not first or not second:
        raise LabError(f"{where}: a pair needs both texts, one is empty")
    return first, second


def _pasted_pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        sep = next((s for s in PAIR_LINE_SEPARATORS if s in line), None)
        parts = line.split(sep) if sep else [line]
        if len(parts) != 2:
            raise LabError(f"line {number} holds {len(parts)} text(s): write each pair on one line as the first "
                           f"text, a tab (or ‖), then the second text")
        pairs.append(_pair(*parts, f"line {number}"))
    return [p for p in pairs if p]


def _upload_pairs(upload: str, pair: tuple[str, str]) -> list[tuple[str, str]]:
    columns, rows = _csv_rows(upload)
    by_name = {c.strip().lower(): c for c in columns}
    for names in (pair, ("text", "text_pair")):
        chosen = [by_name.get(n.lower()) for n in names]
        if all(chosen):
            break
    else:
        if len(columns) < 2:
            raise LabError(f"the CSV needs a header with two text columns ({pair[0]} and {pair[1]}, or any two "
                           f"first columns); found: {', '.join(columns) or 'no header'}")
        chosen = columns[:2]
    pairs = [_pair(row.get(chosen[0]), row.get(chosen[1]), f"line {n}") for n, row in enumerate(rows, start=2)]
    return [p for p in pairs if p]


def _read_upload(upload: str) -> list[str]:
    columns, rows = _csv_rows(upload)
    column = next((c for c in columns if c.strip().lower() in ("text", "sentence", "review", "content")), None)
    if column is None:
        raise LabError(f"the CSV needs a header with a text column (text, sentence, review or content); "
                       f"found: {', '.join(columns) or 'no header'}")
    return [(row.get(column) or "").strip() for row in rows]


def _csv_rows(upload: str) -> tuple[list[str], list[dict]]:
    """An uploaded CSV's header (named columns) and rows, or one clear LabError for what is wrong with it."""
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
        rows = list(reader)
    except csv.Error as err:
        raise LabError(f"the CSV cannot be read: {err}") from None
    extra = next((i for i, row in enumerate(rows, start=2) if None in row), None)
    if extra is not None:
        raise LabError(f"line {extra} has more fields than the header: quote texts that contain the delimiter")
    return columns, rows


def app_recipes() -> list[str]:
    """Recipes a visitor may start: those on the embedded data only (no server paths, no hour-long builds of
    data the app does not ship). Others run from the command line."""

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

    return {t.lab.label: t for t in techniques.load().values() if t.stage == stage and t.lab is not None}


def technique_settings() -> str:
    """Markdown: every registered technique (plugins too) with the recipe keys of its own, as the Lab lists them."""
    lines = []
    for stage, title in (("student", "Students (`init`)"), ("prune", "Pruning (`method`)"),
                         ("quantize", "Quantization (`method`)")):
        lines.append(f"**{title}**\n")
        for t in techniques.load().values():
            if t.stage == stage:
                own = ", ".join(f"`{f.name}`" for f in t.option_fields())
                lines.append(f"- `{t.name}`: {t.label}" + (f"; its own keys: {own}" if own else ""))
        lines.append("")
    return "\n".join(lines) + "Each key's meaning and default: `python -m compression build --help`."


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
