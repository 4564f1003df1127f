"""Prune ``method: structured``: remove whole layers (``drop_layers``), the least important attention heads
(``heads``, ranked globally) and FFN neurons (``ffn``, per layer) by first-order Taylor importance on validation
batches. The matrices physically shrink, which is what buys speed; the bundle records the new shapes."""

from dataclasses import dataclass, field

from compression.core.errors import LabError
from compression.core.registry import PAYS, LabChoice, Technique, register
from compression.core.typed import _check


@dataclass
class StructuredOptions:
    heads: float = field(default=0.0, metadata={"help": "fraction of attention heads removed (ranked globally)"})
    ffn: float = field(default=0.0, metadata={"help": "fraction of FFN neurons removed in each layer"})
    drop_layers: list[int] | None = field(default=None, metadata={"help": "0-based layers removed"})
    importance_batches: int = field(default=8, metadata={"help": "validation batches that rank heads and neurons"})

    def __post_init__(self):
        _check(0 <= self.heads < 1, "heads", self.heads, "0 <= heads < 1")
        _check(0 <= self.ffn < 1, "ffn", self.ffn, "0 <= ffn < 1")
        _check(self.drop_layers is None or (len(self.drop_layers) >= 1 and min(self.drop_layers) >= 0),
               "drop_layers", self.drop_layers, "layer numbers >= 0")
        _check(self.heads > 0 or self.ffn > 0 or bool(self.drop_layers), "heads", self.heads,
               "something to remove: heads > 0, ffn > 0 or drop_layers")
        _check(self.importance_batches >= 1, "importance_batches", self.importance_batches, "an integer >= 1")


def apply(model, cfg, batches):
    from compression.techniques.pruning import structured_prune
    from compression.training.distill import keep_layers

    opts, details = cfg.options, {}
    if opts.drop_layers:
        total = model.config.num_hidden_layers
        if max(opts.drop_layers) >= total or len(set(opts.drop_layers)) >= total:
            raise LabError(f"{cfg.name}: drop_layers {opts.drop_layers} must name some (not all) of the {total} "
                           f"layers 0..{total - 1}")
        model = keep_layers(model, [i for i in range(total) if i not in opts.drop_layers])
        details["layers_dropped"] = sorted(opts.drop_layers)
    if opts.heads > 0 or opts.ffn > 0:
        details.update(structured_prune(model, batches, heads=opts.heads, ffn=opts.ffn))
    return model, details


def advise(flags: dict) -> tuple[str, str]:
    return PAYS, "removing heads, neurons or layers shrinks every matrix multiplication"


def _lab_step(base: str, teacher: str) -> dict:
    # MPNet shares one relative-position bias across heads: prune only its FFN neurons
    heads = 0.0 if base == "teacher" and "mpnet" in teacher else 0.5
    return {"name": f"{base}-slim", "source": base, "method": "structured", "ffn": 0.5, "heads": heads,
            "recover": {"epochs": 1, "batch_size": 32, "learning_rate": 5e-5}}


TECHNIQUE = register(Technique("structured", "prune", "structured pruning", apply, advise=advise,
                               options=StructuredOptions, needs_batches=True,
                               lab=LabChoice("structured pruning (½ heads, ½ FFN)", _lab_step)))
