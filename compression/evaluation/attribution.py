"""Which words a prediction rests on: leave-one-word-out occlusion, for any variant.

A word's score is how much the probability of the predicted label falls when that word alone is removed (positive:
the word supports the prediction; negative: it argues against it). It needs nothing but the model's own predict
function, so it works the same for fp32, int8, ONNX or any plugin's runtime, and all the occluded copies go
through it in one batch (so they see the same batch effects: dynamic int8 scales activations per batch, and its
batched probability can differ from a single prediction in the third decimal). A text of ``n`` words costs one
batch of ``n + 1`` texts, so the length is bounded: a longer text is refused with the limit named, never left to
hang.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

MAX_WORDS = 64  # words of a text (both texts of a pair): 65 texts in one batch
WORD = re.compile(r"\S+")


class TooLong(ValueError):
    """The text has more words than attribution covers."""


@dataclass(frozen=True)
class Word:
    text: str
    part: int  # 0: the (first) text, 1: a pair's second text
    start: int  # character offsets in its text
    end: int
    score: float  # P(predicted label | full text) - P(predicted label | text without this word)


def words_of(text: str, part: int = 0) -> list[tuple[str, int, int, int]]:
    return [(m.group(), part, m.start(), m.end()) for m in WORD.finditer(text)]


def _without(text: str, start: int, end: int) -> str:
    return (text[:start] + text[end:]).replace("  ", " ").strip()


def occluded(text, max_words: int = MAX_WORDS) -> tuple[list[tuple[str, int, int, int]], list]:
    """The words of ``text`` (a string or a (first, second) pair) and one copy of it without each word."""
    parts = text if isinstance(text, tuple) else (text,)
    words = [w for i, part in enumerate(parts) for w in words_of(part, i)]
    if not words:
        raise ValueError("nothing to attribute: the text has no words")
    if len(words) > max_words:
        raise TooLong(f"word attribution covers texts of up to {max_words} words; this one has {len(words)} "
                      f"(shorten it to see which words decide)")
    copies = []
    for _, part, start, end in words:
        cut = list(parts)
        cut[part] = _without(parts[part], start, end)
        copies.append(tuple(cut) if isinstance(text, tuple) else cut[0])
    return words, copies


def occlusion(text, predict: Callable[[list], np.ndarray], label_names: list[str],
              max_words: int = MAX_WORDS) -> dict:
    """Leave-one-word-out attribution of ``predict``'s answer on ``text``.

    ``predict(texts) -> (len(texts), classes)`` probabilities (one call, one batch). Returns the predicted
    ``label``, its ``probability`` and ``words``: a :class:`Word` per word, in reading order.
    """
    words, copies = occluded(text, max_words)
    probs = np.asarray(predict([text, *copies]), dtype=np.float64)
    if probs.shape != (len(copies) + 1, len(label_names)):
        raise ValueError(f"predict returned shape {probs.shape} for {len(copies) + 1} texts of "
                         f"{len(label_names)} classes")
    label = int(probs[0].argmax())
    full = float(probs[0, label])
    return {"label": label_names[label], "probability": full,
            "words": [Word(w, part, start, end, full - float(p[label]))
                      for (w, part, start, end), p in zip(words, probs[1:])]}


def highlighted(text, result: dict) -> list[list[tuple[str, float | None]]]:
    """Per text (one, or two for a pair), ``(piece, score)`` spans that rebuild it exactly: words with their
    score, the spaces between them with None (what ``gr.HighlightedText`` takes)."""
    parts = text if isinstance(text, tuple) else (text,)
    out = []
    for i, part in enumerate(parts):
        spans, at = [], 0
        for w in (w for w in result["words"] if w.part == i):
            if w.start > at:
                spans.append((part[at:w.start], None))
            spans.append((part[w.start:w.end], round(w.score, 4)))
            at = w.end
        if at < len(part):
            spans.append((part[at:], None))
        out.append(spans)
    return out
