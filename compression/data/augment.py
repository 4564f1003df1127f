"""Data augmentation for distillation: new training texts, labelled by the teacher (TinyBERT-style).

Students learn the teacher's function only where they see its outputs. On SST-2 the training split is mostly short
phrases (median 7 words) while the test set is full sentences, so a student that matches the teacher on phrases
still falls 3-4 points behind it on sentences. Perturbed copies of the longer training texts — each word replaced,
with some probability, by one of its nearest neighbours in the teacher's word-embedding space — give the student
more sentence-length text, and the teacher's logits on each copy say what it should predict there. The gold label
of the original no longer applies to a copy (a replaced word may flip it): copies carry the teacher's label.

A transfer set does the same with real text: unlabelled in-domain texts (say, more reviews) labelled by the teacher.
Only texts that are new are kept: one that largely repeats a training, validation or test text (or one of an
``exclude`` set) is dropped, so no evaluated sentence reaches training under another spelling.

Pair tasks (paraphrase, entailment) get perturbed copies of their pairs, both texts perturbed, labelled by the
teacher the same way; a transfer set holds single texts, so it is refused for them. They can also get every pair in
the other order (``swap``): a student reads ``[CLS] A [SEP] B [SEP]`` with segment ids, so (B, A) is new input to it,
and paraphrase is symmetric; the teacher labels the swapped pairs like the copies.

The word substitution is pure (text in, text out, seeded); the embedding neighbours are computed once per teacher.
"""

from __future__ import annotations

import random
from typing import Callable

import numpy as np

from compression.core.texts import normal_form

Progress = Callable[[float, str], None]
WORD_MARKERS = ("▁", "Ġ")  # SentencePiece / byte-level BPE word-start markers


def vocabulary_words(tokenizer) -> dict[str, int]:
    """Whole alphabetic words of a tokenizer's vocabulary (word -> token id): the replacement candidates.

    Sub-word pieces, special tokens and punctuation are left out, so a replacement is always a word. WordPiece marks
    continuations (``##ing``); SentencePiece and byte-level BPE mark word *starts* (``▁good``, ``Ġgood``), and
    there an unmarked token is a continuation.
    """
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_tokens)
    marked = not any(t.startswith("##") for t in vocab) and any(t[:1] in WORD_MARKERS for t in vocab)
    words = {}
    for token, index in sorted(vocab.items(), key=lambda item: item[1]):  # lowest id wins: stable across runs
        if token in special or (marked and token[:1] not in WORD_MARKERS):
            continue
        word = token[1:] if marked else token
        if len(word) >= 2 and word.isalpha() and word.isascii():
            words.setdefault(word, index)
    return words


def embedding_neighbours(embeddings: np.ndarray, words: dict[str, int], wanted: set[str], k: int,
                         chunk: int = 512) -> dict[str, list[str]]:
    """For each word of ``wanted`` in ``words``, its ``k`` nearest other words by cosine of the embedding rows."""
    vocab = sorted(words)
    k = min(k, len(vocab) - 1)
    if k < 1:
        return {}
    matrix = embeddings[[words[w] for w in vocab]].astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True).clip(min=1e-8)
    position = {w: i for i, w in enumerate(vocab)}
    queries = sorted(w for w in wanted if w in position)
    out: dict[str, list[str]] = {}
    for start in range(0, len(queries), chunk):
        batch = queries[start:start + chunk]
        rows = np.array([position[w] for w in batch])
        scores = matrix[rows] @ matrix.T
        scores[np.arange(len(batch)), rows] = -np.inf  # a word is not its own neighbour
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        for word, row, cand in zip(batch, scores, top):
            out[word] = [vocab[j] for j in cand[np.argsort(-row[cand])]]
    return out


def perturb(text: str, neighbours: dict[str, list[str]], replace: float, rng: random.Random) -> str:
    """``text`` with each word that has neighbours replaced by a random one of them with probability ``replace``."""
    out = []
    for word in text.split():
        options = neighbours.get(word.lower())
        out.append(rng.choice(options) if options and rng.random() < replace else word)
    return " ".join(out)


def augment_texts(texts: list, neighbours: dict[str, list[str]], copies: int, replace: float,
                  seed: int, avoid: set | frozenset = frozenset()) -> list:
    """``copies`` perturbed versions of each text (of a pair: both texts perturbed); duplicates of an original, of
    each other or of ``avoid`` (the data's other texts: a copy equal to a test text would leak its teacher label
    into training) dropped."""
    rng = random.Random(seed)
    seen = set(texts) | set(avoid)
    out = []
    for text in texts:
        for _ in range(copies):
            if isinstance(text, tuple):
                new = tuple(perturb(part, neighbours, replace, rng) for part in text)
            else:
                new = perturb(text, neighbours, replace, rng)
            if new not in seen:
                seen.add(new)
                out.append(new)
    return out


def swapped_pairs(pairs: list[tuple[str, str]], avoid: set | frozenset = frozenset()) -> list[tuple[str, str]]:
    """Every pair in the other order, once; none that equals a pair of ``pairs`` (A == B, or both orders present)
    or of ``avoid``."""
    seen = set(pairs) | set(avoid)
    out = []
    for a, b in dict.fromkeys(pairs):
        if (b, a) not in seen:
            seen.add((b, a))
            out.append((b, a))
    return out


def _words(text) -> int:
    return sum(len(part.split()) for part in (text if isinstance(text, tuple) else (text,)))


def source_texts(texts: list, min_words: int, max_texts: int | None, seed: int) -> list:
    """The training texts (or pairs: words of both) worth perturbing: at least ``min_words`` words, a seeded subset
    of ``max_texts``."""
    chosen = [t for t in dict.fromkeys(texts) if _words(t) >= min_words]
    if max_texts is not None and len(chosen) > max_texts:
        chosen = random.Random(seed).sample(chosen, max_texts)
    return chosen


def _grams(text: str, n: int) -> set[int]:
    s = normal_form(text)
    return {hash(s[i:i + n]) for i in range(max(len(s) - n + 1, 1))} if s else set()


def new_texts(texts: list[str], known: list[str], n: int = 12, share: float = 0.5,
              min_contained: int = 24) -> list[str]:
    """``texts`` (first of each, in order) without those that largely repeat a ``known`` text or an earlier kept one:
    at least ``share`` of their character ``n``-grams (of the normal form) occur there. Catches one sentence written
    two ways and a sentence whose phrases are all known (SST's training split holds the phrases of its sentences).

    Also without those that contain a whole ``known`` text (normal forms, as a substring) of at least
    ``min_contained`` characters: a long text that quotes an evaluated sentence can keep most of its n-grams new,
    yet training on it would teach the test item. Shorter known texts (words, short phrases) are not sentences:
    containing one is not a repeat."""
    seen: set[int] = set()
    by_head: dict[str, set[str]] = {}  # a known normal form, found by its first n characters
    for text in known:
        seen |= _grams(text, n)
        form = normal_form(text)
        if len(form) >= max(min_contained, n):
            by_head.setdefault(form[:n], set()).add(form)
    out = []
    for text in dict.fromkeys(t.strip() for t in texts):
        grams = _grams(text, n)
        if grams and len(grams & seen) < share * len(grams) and not _contains_known(normal_form(text), by_head, n):
            out.append(text)
            seen |= grams
    return out


def _contains_known(form: str, by_head: dict[str, set[str]], n: int) -> bool:
    """Whether ``form`` holds one of the known normal forms indexed (by their first ``n`` characters) in
    ``by_head``: one dictionary look-up per position, not one scan per known text."""
    if not by_head:
        return False
    for i in range(len(form) - n + 1):
        for known in by_head.get(form[i:i + n], ()):
            if form.startswith(known, i):
                return True
    return False



