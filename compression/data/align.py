"""Token alignment between a student's tokenizer and the teacher's: do they cut every text into the same pieces?

MiniLM (BERT-uncased WordPiece) and MPNet share their word pieces; MPNet numbers them 4 higher and names its special
tokens differently. When the pieces agree on the run's own texts, the teacher's states describe exactly the token
sequence the student reads, so the student can learn from them without sharing the tokenizer file. Pairs are laid
out differently (``<s> A </s></s> B </s>`` against ``[CLS] A [SEP] B [SEP]``): the teacher's doubled separator is
dropped from its cached token states (``Bundle.outputs``), after which positions agree as well.
"""

from __future__ import annotations

from dataclasses import dataclass

from compression.core.errors import LabError

MAX_MISMATCH = 0.01  # share of texts allowed to tokenize differently (e.g. a literal "<s>" typed in a text)


@dataclass(frozen=True)
class Alignment:
    texts: int
    mismatched: int
    example: str | None  # the first text that tokenizes differently, shortened
    rows: tuple[int, ...] = ()  # the texts that tokenize differently, by position

    @property
    def rate(self) -> float:
        return self.mismatched / max(self.texts, 1)

    def summary(self) -> str:
        return f"{self.texts:,} texts, {self.mismatched:,} tokenized differently ({100 * self.rate:.2f} %)"


def id_map(student, teacher) -> dict[int, int]:
    """Student id -> teacher id for every word piece both vocabularies hold (matched by its string)."""
    teacher_vocab = teacher.get_vocab()
    return {i: teacher_vocab[piece] for piece, i in student.get_vocab().items() if piece in teacher_vocab}


def _pieces(tokenizer, texts: list) -> list[list[int]]:
    """Ids of each text without special tokens; a pair is its two texts' ids one after the other."""
    first = [t[0] if isinstance(t, tuple) else t for t in texts]
    ids = tokenizer(first, add_special_tokens=False)["input_ids"]
    if texts and isinstance(texts[0], tuple):
        second = tokenizer([t[1] for t in texts], add_special_tokens=False)["input_ids"]
        ids = [a + b for a, b in zip(ids, second)]
    return ids


def alignment(student, teacher, texts: list) -> Alignment:
    """How many of ``texts`` (strings or pairs) the two tokenizers cut into the same word pieces."""
    mapping = id_map(student, teacher)
    rows, example = [], None
    for row, (text, s_ids, t_ids) in enumerate(zip(texts, _pieces(student, texts), _pieces(teacher, texts))):
        if [mapping.get(i, -1) for i in s_ids] != t_ids:
            rows.append(row)
            example = example or " / ".join(text if isinstance(text, tuple) else (text,))[:80]
    return Alignment(len(texts), len(rows), example, tuple(rows))


def check_alignment(student, teacher, texts: list, name: str) -> Alignment:
    """The alignment of the two tokenizers on ``texts``, or a clear refusal when too many texts differ."""
    found = alignment(student, teacher, texts)
    if found.rate > MAX_MISMATCH:
        raise LabError(f"{name}: hidden-state distillation needs a tokenizer that cuts texts like the teacher's; "
                       f"on this run's training texts {found.summary()}, above the {100 * MAX_MISMATCH:.0f} % "
                       f"allowed (e.g. \"{found.example}\"); set distill.hidden_weight to 0 (logit distillation "
                       f"works across any tokenizers)")
    return found
