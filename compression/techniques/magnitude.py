"""Prune ``method: magnitude``: zero the smallest weights (``threshold`` or a global ``sparsity``). The masks stay in
force through the recovery fine-tune and become permanent after it. Zeros inside dense matrices do not speed up dense
CPU kernels: only the bundle (bitmask + non-zero values) gets smaller."""

import re
from dataclasses import dataclass, field

from compression.core.config import PRUNE_TARGETS
from compression.core.registry import NO, LabChoice, Technique, register
from compression.core.typed import _check


@dataclass
class MagnitudeOptions:
    sparsity: float | None = field(default=None, metadata={
        "help": "fraction of the selected weights set to zero, globally by |w| (or give threshold)"})
    threshold: float | None = field(default=None, metadata={
        "help": "every selected weight with |w| < threshold becomes 0 (or give sparsity)"})
    targets: list[str] = field(default_factory=lambda: list(PRUNE_TARGETS), metadata={
        "help": "regexes on parameter names of the Linear weights to prune (default: the encoder's)"})

    def __post_init__(self):
        _check((self.sparsity is None) != (self.threshold is None), "sparsity", self.sparsity,
               "exactly one of sparsity or threshold for method magnitude")
        _check(self.sparsity is None or 0 < self.sparsity < 1, "sparsity", self.sparsity, "0 < sparsity < 1")
        _check(self.threshold is None or self.threshold > 0, "threshold", self.threshold, "a number > 0")
        for i, pattern in enumerate(self.targets):
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"targets[{i}]: invalid value {pattern!r} (allowed: a regular expression; {err})")


def apply(model, cfg, batches):
    from compression.techniques.pruning import magnitude_prune

    opts = cfg.options
    magnitude_prune(model, threshold=opts.threshold, sparsity=opts.sparsity, patterns=opts.targets)
    return model, {}


def advise(flags: dict) -> tuple[str, str]:
    return NO, "zeros inside dense matrices do not speed up dense kernels; only the stored bundle shrinks"


RECOVER = {"epochs": 1, "batch_size": 32, "learning_rate": 5e-5}
TECHNIQUE = register(Technique(
    "magnitude", "prune", "unstructured sparsity", apply, advise=advise, options=MagnitudeOptions,
    lab=LabChoice("magnitude pruning 50%", lambda base, teacher: {
        "name": f"{base}-sparse50", "source": base, "method": "magnitude", "sparsity": 0.5, "recover": RECOVER})))
