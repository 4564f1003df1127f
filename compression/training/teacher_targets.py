"""The teacher's outputs as data: logits, hidden states (the first token's or every token's) and labelled
augmented/transfer texts, computed once per (teacher, texts) and cached on disk, so no training loop ever runs the
teacher.

Every cache file has one key format (:func:`cache_path`): its kind, the teacher's content digest and max length,
the digest of this module's code (and what it imports), then what the kind depends on (data, layers, texts, ...).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np

from compression.bundle.folder import load_bundle
from compression.bundle.meta import bundle_digest, read_meta
from compression.core.atomic import temp_path, write_atomic
from compression.core.config import TRANSFER_FIELDS
from compression.core.digest import code_digest
from compression.core.errors import failpoint
from compression.core.hardware import cpu_has_fast_bf16
from compression.core.texts import texts_of
from compression.data.augment import (
    Progress,
    augment_texts,
    embedding_neighbours,
    source_texts,
    swapped_pairs,
    vocabulary_words,
)
from compression.data.loading import SPLITS, LabeledData


def teacher_logits(teacher_folder: str | Path, data: LabeledData, cache_dir: str | Path,
                   progress: Progress | None = None, layers: list[int] = (),
                   known: dict[str, np.ndarray] | None = None, tokens: bool = False) -> dict[str, np.ndarray]:
    """The teacher's logits on every split, computed once and cached by (teacher, data, max length) fingerprints.

    With ``layers``, the same pass over the training split also caches the teacher's states at those layers (the
    first token's, or with ``tokens`` every token's; see :func:`teacher_states`), so intermediate-layer distillation
    costs no second teacher pass. ``known``: logits of some splits computed already by this teacher (its test
    evaluation), not computed again.
    """

    path = cache_path(cache_dir, "teacher-logits", teacher_folder, data.fingerprint)
    train_texts = texts_of(data.splits["train"])
    states_path = states_cache_path(teacher_folder, train_texts, layers, cache_dir, tokens) if layers else None
    if path.exists() and (states_path is None or states_path.exists()):
        with np.load(path) as cached:
            if all(s in cached and len(cached[s]) == len(data.splits[s]) for s in SPLITS):
                return {s: cached[s] for s in SPLITS}
    teacher = load_bundle(teacher_folder)
    out = {}
    for i, split in enumerate(SPLITS):
        what = f"teacher logits on {split} ({len(data.splits[split]):,} texts)"
        if progress:
            progress(i / len(SPLITS), what)
        if split == "train" and layers:
            report = (lambda f, m: progress((i + f) / len(SPLITS), m)) if progress else (lambda f, m: None)
            out[split] = _label(teacher, train_texts, report, what, layers, cache_dir, tokens)
        elif known and split in known and len(known[split]) == len(data.splits[split]):
            out[split] = known[split]
        else:
            out[split] = teacher.logits(texts_of(data.splits[split]), batch_size=64)
    save_cache(path, "logits.before-cache", **out)
    return out


def states_cache_path(teacher_folder, texts: list, layers, cache_dir, tokens: bool = False) -> Path:
    """Where the teacher's states on ``texts`` at ``layers`` are cached (key: teacher content and max length,
    layers, the code, the texts): an ``.npz`` of first-token states, or with ``tokens`` a folder of every token's."""
    if tokens:
        return cache_path(cache_dir, "teacher-token-states", teacher_folder, str(list(layers)),
                          json.dumps(texts)).with_suffix("")
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
                   progress: Progress | None = None, tokens: bool = False):
    """The teacher's first-token state at each of ``layers`` (1-based) for every text: ``(len(texts), len(layers),
    hidden)`` float16; with ``tokens``, every token's (a :class:`TokenStates`). Cached by (teacher, max length,
    layers, texts): read from the labelling pass's cache when it made them; otherwise one teacher pass over
    ``texts``."""
    path = states_cache_path(teacher_folder, texts, layers, cache_dir, tokens)
    if tokens and path.is_dir():
        found = TokenStates.open(path)
        if len(found) == len(texts):
            return found
    elif path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            if len(cached["states"]) == len(texts):
                return cached["states"]
    _label(load_bundle(teacher_folder), texts, progress or (lambda f, m: None), "teacher states", layers,
           cache_dir, tokens)
    if tokens:
        return TokenStates.open(path)
    with np.load(path, allow_pickle=False) as cached:
        return cached["states"]


@dataclasses.dataclass(frozen=True)
class TokenStates:
    """Every token's teacher states for a list of texts, memory-mapped: text ``i`` owns rows
    ``offsets[i]:offsets[i + 1]`` of ``values`` (tokens, layers, hidden) float16."""

    values: np.ndarray
    offsets: np.ndarray
    layers: tuple[int, ...]

    @classmethod
    def open(cls, folder: Path) -> "TokenStates":
        meta = json.loads((folder / "meta.json").read_text())
        offsets = np.load(folder / "offsets.npy", allow_pickle=False)
        values = np.memmap(folder / "values.f16", dtype=np.float16, mode="r",
                           shape=(int(offsets[-1]), len(meta["layers"]), meta["hidden"]))
        return cls(values, offsets, tuple(meta["layers"]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def first(self) -> np.ndarray:
        """(texts, layers, hidden): the first token's states, as the first-token cache holds them."""
        return np.asarray(self.values[self.offsets[:-1]])

    def rows(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i]:self.offsets[i + 1]]


class _TokenStatesWriter:
    """Writes :class:`TokenStates` chunk by chunk (nothing of the size of the whole held in memory) into a temp
    folder that is renamed into place when complete: readers never see a half-written cache."""

    def __init__(self, folder: Path, layers, hidden: int):
        self.folder, self.temp, self.layers, self.hidden = folder, temp_path(folder), list(layers), hidden
        shutil.rmtree(self.temp, ignore_errors=True)
        self.temp.mkdir(parents=True)
        self.file = open(self.temp / "values.f16", "wb")
        self.lengths: list[int] = []

    def write(self, chunk: list[np.ndarray]) -> None:
        for states in chunk:
            self.file.write(np.ascontiguousarray(states, dtype=np.float16).tobytes())
            self.lengths.append(len(states))

    def close(self) -> None:
        self.file.close()
        np.save(self.temp / "offsets.npy", np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64))
        (self.temp / "meta.json").write_text(json.dumps({"layers": self.layers, "hidden": self.hidden}))
        failpoint("states.before-cache")
        shutil.rmtree(self.folder, ignore_errors=True)
        os.replace(self.temp, self.folder)


def save_cache(path: Path, point: str, **arrays: np.ndarray) -> None:
    """Write an ``.npz`` cache atomically: readers never see half a file; a dead writer leaves only a temp file,
    which the store removes when it next opens. ``point`` names the failpoint just before the rename."""

    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue(), before_replace=lambda: failpoint(point))


def labelling_bf16() -> bool:
    """Whether the teacher's labelling passes run under bf16 autocast: where the CPU computes bf16 natively
    (AMX, AVX512-BF16), the passes that dominate a build's teacher time; elsewhere bf16 is slower than fp32.
    Its scores (test, validation) stay fp32 either way. The caches do not depend on it: targets made in either
    precision are reused, never recomputed."""
    return cpu_has_fast_bf16()


def _label(teacher, texts: list, report: Progress, what: str, layers: list[int] = (),
           cache_dir: str | Path | None = None, tokens: bool = False) -> np.ndarray:
    """The teacher's logits on ``texts``, in chunks with progress: one forward pass per text dominates the time.
    With ``layers``, the same pass caches their states in ``cache_dir`` (first token's, or with ``tokens`` every
    token's, written as they come)."""
    bf16 = labelling_bf16()
    logits = np.zeros((len(texts), len(teacher.labels)), dtype=np.float32)
    hidden = teacher.model.config.hidden_size if layers else 0
    path = states_cache_path(teacher.folder, texts, layers, cache_dir, tokens) if layers else None
    states = np.zeros((len(texts), len(layers), hidden), dtype=np.float16) if layers and not tokens else None
    writer = _TokenStatesWriter(path, layers, hidden) if layers and tokens else None
    step = 2048
    for start in range(0, len(texts), step):
        report(start / max(len(texts), 1), f"{what}: teacher labels {start:,}/{len(texts):,} texts"
                                           + (f" (and states at layers {list(layers)})" if layers else "")
                                           + (" in bf16" if bf16 else ""))
        chunk = teacher.outputs(texts[start:start + step], batch_size=64, layers=layers, tokens=tokens, bf16=bf16)
        logits[start:start + step] = chunk[0]
        if writer is not None:
            writer.write(chunk[1])
        elif layers:
            states[start:start + step] = chunk[1]
    if writer is not None:
        writer.close()
    elif layers:
        save_cache(path, "states.before-cache", states=states, layers=np.asarray(layers))
    return logits


def _joined(text) -> str:
    return "\x1f".join(text) if isinstance(text, tuple) else text


def teacher_transfer(teacher_folder: str | Path, texts: list[str], cache_dir: str | Path,
                     progress: Progress | None = None, layers: list[int] = (), tokens: bool = False) -> np.ndarray:
    """The teacher's logits on a transfer set's ``texts``, cached on disk (key: teacher content and max length, the
    texts, the lab's version); with ``layers`` their first-token states too, from the same pass."""

    path = cache_path(cache_dir, "transfer", teacher_folder, "\x1d".join(texts))
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            return cached["logits"]
    logits = _label(load_bundle(teacher_folder), texts, progress or (lambda f, m: None), "transfer", layers, cache_dir,
                    tokens)
    save_cache(path, "transfer.before-cache", logits=logits)
    return logits


def teacher_augmented(teacher_folder: str | Path, train_texts: list[str], cfg, seed: int, cache_dir: str | Path,
                      progress: Progress | None = None, other_texts: list[str] = (),
                      layers: list[int] = (), tokens: bool = False) -> tuple[list[str], np.ndarray]:
    """Augmented texts (the swapped training pairs, then the perturbed copies) and the teacher's logits on them
    (with ``layers``, their states from the same pass), cached on disk.

    The cache key covers everything the result depends on: the teacher's content and max length, the training texts,
    the other splits' texts (copies equal to one are dropped), the config, the seed and the lab's version.
    Labelling dominates the time (one teacher forward pass per new text), so it runs in chunks with progress.
    """

    report = progress or (lambda f, m: None)
    copy_settings = {k: v for k, v in cfg.key().items() if k not in TRANSFER_FIELDS}  # swap only when set
    path = cache_path(cache_dir, "augmented", teacher_folder, "\x1d".join(map(_joined, train_texts)),
                      "\x1d".join(map(_joined, other_texts)), str(sorted(copy_settings.items())), str(seed))
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            texts = json.loads(cached["texts"].tobytes().decode())
            return [tuple(t) if isinstance(t, list) else t for t in texts], cached["logits"]  # JSON made pairs lists
    teacher = load_bundle(teacher_folder)
    texts = swapped_pairs(train_texts, avoid=set(other_texts)) if cfg.swap else []
    if cfg.copies:
        texts += _copies(teacher, train_texts, cfg, seed, report, avoid=set(other_texts) | set(texts))
    logits = _label(teacher, texts, report, "augment", layers, cache_dir, tokens)
    # Texts as UTF-8 JSON bytes: a fixed-width numpy string array would take rows x longest text x 4 bytes.
    save_cache(path, "augment.before-cache", texts=np.frombuffer(json.dumps(texts).encode(), dtype=np.uint8),
               logits=logits)
    report(1.0, f"augment: {len(texts):,} new texts labelled by the teacher")
    return texts, logits


def _copies(teacher, train_texts: list, cfg, seed: int, report: Progress, avoid: set) -> list:
    """``cfg.copies`` perturbed copies of the longer training texts, words replaced by their embedding neighbours."""
    chosen = source_texts(train_texts, cfg.min_words, cfg.max_texts, seed)
    report(0.0, f"augment: {len(chosen):,} training texts of ≥ {cfg.min_words} words; finding word neighbours")
    words = vocabulary_words(teacher.tokenizer)
    wanted = {w.lower() for t in chosen for part in (t if isinstance(t, tuple) else (t,)) for w in part.split()}
    embeddings = teacher.model.get_input_embeddings().weight.detach().float().numpy()
    neighbours = embedding_neighbours(embeddings, words, wanted, cfg.neighbours)
    return augment_texts(chosen, neighbours, cfg.copies, cfg.replace, seed, avoid=avoid)
