"""Student ``init: teacher-layers`` (DistilBERT-style): a copy of the fine-tuned teacher keeping some of its layers
(``layers``, else every other one). It shares the teacher's tokenizer, so intermediate layers can be matched."""

from compression.core.registry import LabChoice, Technique, register
from compression.core.typed import _check


def apply(cfg, teacher_folder, labels):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from compression.training.distill import every_other_layer, keep_layers

    tokenizer = AutoTokenizer.from_pretrained(teacher_folder, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(teacher_folder, trust_remote_code=False,
                                                               use_safetensors=True)
    return tokenizer, keep_layers(model, cfg.layers or every_other_layer(model.config.num_hidden_layers))


def validate(cfg) -> None:
    _check(cfg.model is None, "model", cfg.model, "null (teacher-layers copies the teacher)")
    _check(cfg.layers is None or (len(cfg.layers) >= 1 and len(set(cfg.layers)) == len(cfg.layers)
                                  and min(cfg.layers) >= 0), "layers", cfg.layers, "distinct layer numbers >= 0")


TECHNIQUE = register(Technique(
    "teacher-layers", "student", "distilled: half the teacher's layers", apply, validate=validate,
    lab=LabChoice("Teacher, every other layer", lambda base, teacher: {"name": "teacher-half",
                                                                         "init": "teacher-layers"})))
