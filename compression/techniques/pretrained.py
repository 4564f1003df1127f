"""Student ``init: pretrained``: a small pretrained backbone with its own tokenizer, distilled from the teacher's
cached logits (which works across tokenizers)."""

from compression.core.registry import LabChoice, Technique, register
from compression.core.typed import _check
from compression.data.sources import load_tokenizer_and_model


def apply(cfg, teacher_folder, labels):
    return load_tokenizer_and_model(cfg.model, labels)


def validate(cfg) -> None:
    _check(cfg.model is not None, "model", cfg.model, "a model reference")
    _check(cfg.layers is None, "layers", cfg.layers, "null (only init teacher-layers or pretrained-layers keep "
           "some layers)")


TECHNIQUE = register(Technique(
    "pretrained", "student", "distilled: pretrained backbone", apply, validate=validate,
    lab=LabChoice("MiniLM-L6 (pretrained)",
                  lambda base, teacher: {"name": "minilm-l6", "init": "pretrained", "model": "embedded:minilm-l6"})))
