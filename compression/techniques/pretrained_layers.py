"""Student ``init: pretrained-layers``: a small pretrained backbone keeping some of its layers (``layers``, else
every other one), distilled like a pretrained student."""

from compression.core.registry import LabChoice, Technique, register
from compression.core.typed import _check
from compression.data.sources import load_tokenizer_and_model


def apply(cfg, teacher_folder, labels):
    from compression.training.distill import every_other_layer, keep_layers

    tokenizer, model = load_tokenizer_and_model(cfg.model, labels)
    return tokenizer, keep_layers(model, cfg.layers or every_other_layer(model.config.num_hidden_layers))


def validate(cfg) -> None:
    _check(cfg.model is not None, "model", cfg.model, "a model reference")
    _check(cfg.layers is None or (len(cfg.layers) >= 1 and len(set(cfg.layers)) == len(cfg.layers)
                                  and min(cfg.layers) >= 0), "layers", cfg.layers, "distinct layer numbers >= 0")


TECHNIQUE = register(Technique(
    "pretrained-layers", "student", "distilled: layer-dropped backbone", apply, validate=validate,
    lab=LabChoice("MiniLM-L3 (layers 0,2,4)",
                  lambda base, teacher: {"name": "minilm-l3", "init": "pretrained-layers",
                                         "model": "embedded:minilm-l6", "layers": [0, 2, 4]})))
