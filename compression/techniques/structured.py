"""Prune ``method: structured``: remove whole layers (``drop_layers``), the least important attention heads
(``heads``, ranked globally) and FFN neurons (``ffn``, per layer) by first-order Taylor importance on validation
batches. The matrices physically shrink, which is what buys speed; the bundle records the new shapes."""

from compression.core.config import _check
from compression.core.errors import LabError
from compression.core.registry import PAYS, LabChoice, Technique, register


def apply(model, cfg, batches):
    from compression.techniques.pruning import structured_prune
    from compression.training.distill import keep_layers

    details = {}
    if cfg.drop_layers:
        total = model.config.num_hidden_layers
        if max(cfg.drop_layers) >= total or len(set(cfg.drop_layers)) >= total:
            raise LabError(f"{cfg.name}: drop_layers {cfg.drop_layers} must name some (not all) of the {total} "
                           f"layers 0..{total - 1}")
        model = keep_layers(model, [i for i in range(total) if i not in cfg.drop_layers])
        details["layers_dropped"] = sorted(cfg.drop_layers)
    if cfg.heads > 0 or cfg.ffn > 0:
        details.update(structured_prune(model, batches, heads=cfg.heads, ffn=cfg.ffn))
    return model, details


def validate(cfg) -> None:

    _check(cfg.sparsity is None and cfg.threshold is None, "method", cfg.method,
           "magnitude, when sparsity or threshold are set")
    _check(0 <= cfg.heads < 1, "heads", cfg.heads, "0 <= heads < 1")
    _check(0 <= cfg.ffn < 1, "ffn", cfg.ffn, "0 <= ffn < 1")
    _check(cfg.drop_layers is None or (len(cfg.drop_layers) >= 1 and min(cfg.drop_layers) >= 0),
           "drop_layers", cfg.drop_layers, "layer numbers >= 0")
    _check(cfg.heads > 0 or cfg.ffn > 0 or bool(cfg.drop_layers), "heads", cfg.heads,
           "something to remove: heads > 0, ffn > 0 or drop_layers")


def advise(flags: dict) -> tuple[str, str]:
    return PAYS, "removing heads, neurons or layers shrinks every matrix multiplication"


def _lab_step(base: str, teacher: str) -> dict:
    # MPNet shares one relative-position bias across heads: prune only its FFN neurons
    heads = 0.0 if base == "teacher" and "mpnet" in teacher else 0.5
    return {"name": f"{base}-slim", "source": base, "method": "structured", "ffn": 0.5, "heads": heads,
            "recover": {"epochs": 1, "batch_size": 32, "learning_rate": 5e-5}}


TECHNIQUE = register(Technique("structured", "prune", "structured pruning", apply, advise=advise, validate=validate,
                               needs_batches=True,
                               lab=LabChoice("structured pruning (½ heads, ½ FFN)", _lab_step)))
