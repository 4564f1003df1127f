"""Prune ``method: magnitude``: zero the smallest weights (``threshold`` or a global ``sparsity``). The masks stay in
force through the recovery fine-tune and become permanent after it. Zeros inside dense matrices do not speed up dense
CPU kernels: only the bundle (bitmask + non-zero values) gets smaller."""

from compression.core.config import _check
from compression.core.registry import NO, LabChoice, Technique, register


def apply(model, cfg, batches):
    from compression.techniques.pruning import magnitude_prune

    magnitude_prune(model, threshold=cfg.threshold, sparsity=cfg.sparsity, patterns=cfg.targets)
    return model, {}


def validate(cfg) -> None:

    _check((cfg.sparsity is None) != (cfg.threshold is None), "sparsity", cfg.sparsity,
           "exactly one of sparsity or threshold for method magnitude")
    _check(cfg.sparsity is None or 0 < cfg.sparsity < 1, "sparsity", cfg.sparsity, "0 < sparsity < 1")
    _check(cfg.threshold is None or cfg.threshold > 0, "threshold", cfg.threshold, "a number > 0")
    _check(cfg.heads == 0 and cfg.ffn == 0 and not cfg.drop_layers, "method", cfg.method,
           "structured, when heads, ffn or drop_layers are set")


def advise(flags: dict) -> tuple[str, str]:
    return NO, "zeros inside dense matrices do not speed up dense kernels; only the stored bundle shrinks"


RECOVER = {"epochs": 1, "batch_size": 32, "learning_rate": 5e-5}
TECHNIQUE = register(Technique(
    "magnitude", "prune", "unstructured sparsity", apply, advise=advise, validate=validate,
    lab=LabChoice("magnitude pruning 50%", lambda base, teacher: {
        "name": f"{base}-sparse50", "source": base, "method": "magnitude", "sparsity": 0.5, "recover": RECOVER})))
