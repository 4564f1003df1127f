"""The teacher's outputs as data: logits, first-token states and labelled augmented/transfer texts, computed once
per (teacher, texts) and cached on disk, so no training loop ever runs the teacher.

Every cache file has one key format (:func:`cache_path`): its kind, the teacher's content digest and max length,
the digest of this module's code (and what it imports), then what the kind depends on (data, layers, texts, ...).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import numpy as np

from compression.bundle.folder import load_bundle
from compression.bundle.meta import bundle_digest, read_meta
from compression.core.atomic import write_atomic
from compression.core.config import TRANSFER_FIELDS
from compression.core.digest import code_digest
from compression.core.errors import failpoint
from compression.core.texts import texts_of
from compression.data.augment import Progress, augment_texts, embedding_neighbours, source_texts, vocabulary_words
from compression.data.loading import SPLITS, LabeledData


def teacher_logits(teacher_folder: str | Path, data: LabeledData, cache_dir: str | Path,
                   progress: Progress | None = None, layers: list[int] = (),
                   known: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The teacher's logits on every split, computed once and cached by (teacher, data, max length) fingerprints.

    With ``layers``, the same pass over the training split also caches the first token's state at those teacher
    layers (see :func:`teacher_states`), so intermediate-layer distillation costs no second teacher pass. ``known``:
    logits of some splits computed already by this teacher (its test evaluation), not computed again.
    """

    path = cache_path(cache_dir, "teacher-logits", teacher_folder, data.fingerprint)
    train_texts = texts_of(data.splits["train"])
    states_path = states_cache_path(teacher_folder, train_texts, layers, cache_dir) if layers else None
    if path.is_file() and (states_path is None or states_path.is_file()):
        with np.load(path) as cached:
            if all(s in cached and len(cached[s]) == len(data.splits[s]) for s in SPLITS):
                return {s: cached[s] for s in SPLITS}
    teacher = load_bundle(teacher_folder)
    out = {}
    for i, split in enumerate(SPLITS):
        if progress:
            progress(i / len(SPLITS), f"teacher logits on {split} ({len(data.splits[split]):,} texts)"
                                      + (f" and its states at layers {list(layers)}" if split == "train" and layers
                                         else ""))
        if split == "train" and layers:
            out[split], states = teacher.outputs(train_texts, batch_size=64, layers=layers)
            save_cache(states_path, "states.before-cache", states=states, layers=np.asarray(layers))
        elif known and split in known and len(known[split]) == len(data.splits[split]):
            out[split] = known[split]
        else:
            out[split] = teacher.logits(texts_of(data.splits[split]), batch_size=64)
    save_cache(path, "logits.before-cache", **out)
    return out


def states_cache_path(teacher_folder, texts: list, layers, cache_dir) -> Path:
    """Where the teacher's first-token states on ``texts`` at ``layers`` are cached (key: teacher content and max
    length, layers, the code, the texts)."""

    return cache_path(cache_dir, "teacher-states", teacher_folder, str(list(layers)), json.dumps(texts))


def cache_path(cache_dir: str | Path, kind: str, teacher_folder: str | Path, *parts: str) -> Path:
    """The one key format of every teacher cache: ``<kind>-<24 hex>.npz``, hashed over the kind, the teacher's
    content and max length, this module's code digest and ``parts`` (what the kind depends on)."""
    digest = hashlib.sha256()
    for part in (kind, bundle_digest(teacher_folder), str(read_meta(teacher_folder)["max_length"]),
                 code_digest(__name__), *parts):
        digest.update(part.encode() + b"\x1d")
    return Path(cache_dir) / f"{kind}-{digest.hexdigest()[:24]}.npz"


def teacher_states(teacher_folder: str | Path, texts: list, layers: list[int], cache_dir: str | Path,
                   progress: Progress | None = None) -> np.ndarray:
    """The teacher's first-token state at each of ``layers`` (1-based) for every text: ``(len(texts), len(layers),
    hidden)`` float16, cached by (teacher, max length, layers, texts). Read from the logits pass's cache when it
    made them; otherwise one teacher pass over ``texts`` (e.g. augmented texts)."""
    path = states_cache_path(teacher_folder, texts, layers, cache_dir)
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            if len(cached["states"]) == len(texts):
                return cached["states"]

    if progress:
        progress(0.0, f"teacher states on {len(texts):,} texts at layers {list(layers)}")
    states = load_bundle(teacher_folder).outputs(texts, batch_size=64, layers=layers)[1]
    save_cache(path, "states.before-cache", states=states, layers=np.asarray(layers))
    return states


def save_cache(path: Path, point: str, **arrays: np.ndarray) -> None:
    """Write an ``.npz`` cache atomically: readers never see half a file; a dead writer leaves only a temp file,
    which the store removes when it next opens. ``point`` names the failpoint just before the rename."""

    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue(), before_replace=lambda: failpoint(point))


def _label(teacher, texts: list[str], report: Progress, what: str, layers: list[int] = (),
           cache_dir: str | Path | None = None) -> np.ndarray:
    """The teacher's logits on ``texts``, in chunks with progress: one forward pass per text dominates the time.
    With ``layers``, the same pass caches their first-token states in ``cache_dir`` (hidden-state distillation)."""
    logits = np.zeros((len(texts), len(teacher.labels)), dtype=np.float32)
    states = np.zeros((len(texts), len(layers), teacher.model.config.hidden_size), dtype=np.float16) if layers else None
    step = 2048
    for start in range(0, len(texts), step):
        report(start / max(len(texts), 1), f"{what}: teacher labels {start:,}/{len(texts):,} new texts")
        chunk = teacher.outputs(texts[start:start + step], batch_size=64, layers=layers)
        logits[start:start + step] = chunk[0]
        if layers:
            states[start:start + step] = chunk[1]
    if layers:
        save_cache(states_cache_path(teacher.folder, texts, layers, cache_dir), "states.before-cache",
                   states=states, layers=np.asarray(layers))
    return logits


def _joined(text) -> str:
    return "\x1f".join(text) if isinstance(text, tuple) else text


def teacher_transfer(teacher_folder: str | Path, texts: list[str], cache_dir: str | Path,
                     progress: Progress | None = None, layers: list[int] = ()) -> np.ndarray:
    """The teacher's logits on a transfer set's ``texts``, cached on disk (key: teacher content and max length, the
    texts, the lab's version); with ``layers`` their first-token states too, from the same pass."""

    path = cache_path(cache_dir, "transfer", teacher_folder, "\x1d".join(texts))
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            return cached["logits"]
    logits = _label(load_bundle(teacher_folder), texts, progress or (lambda f, m: None), "transfer", layers, cache_dir)
    save_cache(path, "transfer.before-cache", logits=logits)
    return logits


def teacher_augmented(teacher_folder: str | Path, train_texts: list[str], cfg, seed: int, cache_dir: str | Path,
                      progress: Progress | None = None, other_texts: list[str] = (),
                      layers: list[int] = ()) -> tuple[list[str], np.ndarray]:
    """Augmented texts and the teacher's logits on them (with ``layers``, their first-token states from the same
    pass), cached on disk.

    The cache key covers everything the result depends on: the teacher's content and max length, the training texts,
    the other splits' texts (copies equal to one are dropped), the config, the seed and the lab's version.
    Labelling dominates the time (one teacher forward pass per new text), so it runs in chunks with progress.
    """

    report = progress or (lambda f, m: None)
    copy_settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in TRANSFER_FIELDS}
    path = cache_path(cache_dir, "augmented", teacher_folder, "\x1d".join(map(_joined, train_texts)),
                      "\x1d".join(map(_joined, other_texts)), str(sorted(copy_settings.items())), str(seed))
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            texts = json.loads(cached["texts"].tobytes().decode())
            return [tuple(t) if isinstance(t, list) else t for t in texts], cached["logits"]  # JSON made pairs lists
    teacher = load_bundle(teacher_folder)
    chosen = source_texts(train_texts, cfg.min_words, cfg.max_texts, seed)
    report(0.0, f"augment: {len(chosen):,} training texts of ≥ {cfg.min_words} words; finding word neighbours")
    words = vocabulary_words(teacher.tokenizer)
    wanted = {w.lower() for t in chosen for part in (t if isinstance(t, tuple) else (t,)) for w in part.split()}
    embeddings = teacher.model.get_input_embeddings().weight.detach().float().numpy()
    neighbours = embedding_neighbours(embeddings, words, wanted, cfg.neighbours)
    texts = augment_texts(chosen, neighbours, cfg.copies, cfg.replace, seed, avoid=set(other_texts))
    logits = _label(teacher, texts, report, "augment", layers, cache_dir)
    # Texts as UTF-8 JSON bytes: a fixed-width numpy string array would take rows x longest text x 4 bytes.
    save_cache(path, "augment.before-cache", texts=np.frombuffer(json.dumps(texts).encode(), dtype=np.uint8),
               logits=logits)
    report(1.0, f"augment: {len(texts):,} new texts labelled by the teacher")
    return texts, logits
