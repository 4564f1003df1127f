"""What a classifier reads: a text, or a pair of texts for pair tasks (paraphrase, entailment, duplicate questions).

A pair is a ``(first, second)`` tuple everywhere in the lab (JSON gives it back as a two-item list; ``as_text``
restores the tuple). ``encode`` is the one place texts meet a tokenizer, so every caller keeps the pair structure:
the tokenizer adds its own separators and segment ids (BERT ``[CLS] A [SEP] B [SEP]`` with token types 0/1, MPNet
``<s> A </s></s> B </s>``), and truncation shares the length budget between the two texts (longest first).
Pure: nothing here imports torch or transformers.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence, Union

Text = Union[str, tuple[str, str]]
PAIR_SEPARATOR = " ‖ "  # how a pair is shown on one line (tables, logs)


def as_text(item) -> Text:
    """A str stays a str; a two-item list or tuple of str becomes a pair tuple."""
    if isinstance(item, str):
        return item
    if isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(t, str) for t in item):
        return (item[0], item[1])
    raise ValueError(f"a text is a string or a pair of two strings, got {type(item).__name__}")


def as_texts(items: Iterable) -> list[Text]:
    """``items`` as texts, all single or all pairs (a mixed list has no one tokenization)."""
    texts = [as_text(t) for t in items]
    kinds = {isinstance(t, tuple) for t in texts}
    if len(kinds) > 1:
        raise ValueError("texts mix single texts and pairs; give one kind")
    return texts


def of_kind(items: Iterable, pairs: bool) -> list[Text]:
    """The items that are texts of one kind (pairs, or single texts), pairs as tuples; anything else is left out."""
    out = []
    for item in items:
        try:
            text = as_text(item)
        except ValueError:
            continue
        if isinstance(text, tuple) == pairs:
            out.append(text)
    return out


def is_pairs(texts: Sequence[Text]) -> bool:
    return bool(texts) and isinstance(texts[0], tuple)


def encode(tokenizer, texts: Sequence[Text], **kwargs):
    """``tokenizer(...)`` on single texts or on pairs (first texts, second texts): the pair structure is kept."""
    texts = as_texts(texts)
    if is_pairs(texts):
        return tokenizer([a for a, _ in texts], [b for _, b in texts], **kwargs)
    return tokenizer(texts, **kwargs)


def texts_of(split) -> list[Text]:
    """A data split's examples: its ``text`` column, zipped with ``text_pair`` for a pair task."""
    if "text_pair" in split.column_names:
        return list(zip(split["text"], split["text_pair"]))
    return list(split["text"])


def char_length(text: Text) -> int:
    return len(text) if isinstance(text, str) else len(text[0]) + len(text[1])


def one_line(text: Text) -> str:
    """A text as one line for people: a pair as ``first ‖ second``."""
    return text if isinstance(text, str) else PAIR_SEPARATOR.join(text)


PTB_BRACKETS = re.compile(r"-[lr][rsc]b-")  # Penn Treebank's -lrb- / -rrb- ... (SST writes "(" that way)


def normal_form(text: str) -> str:
    """``text`` lower-cased with Treebank brackets, spaces and punctuation removed: "Does n't -LRB- sic -RRB-" and
    "doesn't (sic)" are both "doesntsic"."""
    return re.sub(r"[^a-z0-9]", "", PTB_BRACKETS.sub("", text.lower()))
