"""Quantize ``method: dynamic-int8``: dynamic int8 of every Linear (per-channel weights, activations quantized per
batch), optionally with int8 word embeddings (``int8_embeddings``; torch keeps them fp32, which would leave most
of a small model's bytes untouched). The fastest CPU path measured here. The bundle stores int8 weights with their
scales; the loader rebuilds the quantized modules and loads them.

``activation_bits`` (auto | 8 | 7): torch's module quantizes activations to 7 bits; the lab's
(:mod:`compression.bundle.qlinear`) uses 8 where the CPU accumulates int8 products in 32 bits (VNNI/AMX), which keeps
models with outlier activation channels (MPNet) at fp32 accuracy. ``int8_tolerance`` (with ``max_fp32_layers``)
keeps the Linear layers whose int8 hurts validation accuracy most in fp32 until the drop is within the tolerance.

``bundle.json`` ``weights`` records ``activation_bits`` (what the probe logits were made with), ``fp32_layers``
(names of the Linear layers left fp32; they run at fp32 speed), ``int8_layers`` / ``linear_layers`` (counts) and,
when tuned, ``int8_tuning`` (accuracies, the sensitivity ranking, each step). ``restore`` rebuilds exactly that; a
bundle without ``activation_bits`` predates the setting and was made with 7. An 8-bit bundle loaded on a CPU
without VNNI/AMX runs with 7 bits (8 could saturate there) and says so: a Python warning and the model's
``load_warnings``.
"""

from dataclasses import dataclass, field
from typing import Literal

from compression.bundle.folder import decode_weights
from compression.core import hardware  # hardware.cpu_info() looked up per call: tests stand in another CPU
from compression.core.hardware import int8_fast
from compression.core.registry import MAYBE, PAYS, Built, LabChoice, Technique, register
from compression.core.typed import _check


@dataclass
class DynamicInt8Options:
    int8_embeddings: bool = field(default=True, metadata={
        "help": "store the word embeddings as int8 too (torch keeps them fp32)"})
    activation_bits: Literal["auto", 8, 7] = field(default="auto", metadata={
        "help": "bits of the activations. 8 is more accurate (models with outlier channels, like MPNet, lose "
                "points at 7) and safe where the CPU has VNNI/AMX; 7 is torch's reduce_range, safe on any CPU; "
                "auto: 8 with VNNI/AMX, else 7. An 8-bit bundle loaded on a CPU without VNNI/AMX runs with 7 and "
                "says so"})
    int8_tolerance: float | None = field(default=None, metadata={
        "help": "largest drop in validation accuracy against the fp32 source (e.g. 0.005). The Linear layers "
                "whose int8 hurts most (ranked by logit KL on validation texts) are kept fp32, one at a time, "
                "until the drop is within it or max_fp32_layers is reached; null quantizes every Linear"})
    max_fp32_layers: int = field(default=4, metadata={
        "help": "with int8_tolerance: at most this many Linear layers kept fp32 (each runs at fp32 speed; the "
                "bundle lists them)"})

    def __post_init__(self):
        _check(self.activation_bits in ("auto", 8, 7) and not isinstance(self.activation_bits, (bool, float)),
               "activation_bits", self.activation_bits, "auto, 8 or 7")
        _check(self.int8_tolerance is None or 0 <= self.int8_tolerance < 1, "int8_tolerance", self.int8_tolerance,
               "a number in [0, 1): the largest validation accuracy drop against fp32, e.g. 0.005; or null")
        _check(isinstance(self.max_fp32_layers, int) and not isinstance(self.max_fp32_layers, bool)
               and self.max_fp32_layers >= 0, "max_fp32_layers", self.max_fp32_layers, "an integer >= 0")

FALLBACK_WARNING = ("int8 activations: this bundle was made with 8-bit activations, but this CPU has no VNNI/AMX "
                    "(8-bit int8 products could saturate its 16-bit accumulators), so it runs with 7-bit "
                    "activations: predictions can differ slightly from the recorded ones")


def _flags() -> dict:
    return hardware.cpu_info()["flags"]


def activation_bits(setting, flags: dict | None = None) -> tuple[int, list[str]]:
    """The bits a build uses for ``setting`` on a CPU with ``flags`` and why it departs from the setting, if it
    does: ``auto`` is 8 with VNNI/AMX, else 7; an explicit 8 without VNNI/AMX builds with 7 (and says so)."""

    fast = int8_fast(_flags() if flags is None else flags)
    if setting == "auto":
        return (8 if fast else 7), []
    if int(setting) == 8 and not fast:
        return 7, ["activation_bits 8 needs a CPU with VNNI/AMX (8-bit int8 products could saturate without "
                   "them); built with 7-bit activations"]
    return int(setting), []


def apply(model, tokenizer, cfg, work_dir, *, validation=None) -> Built:
    import copy

    from compression.bundle.qlinear import linear_names, quantize_linears, tune_fp32_layers
    from compression.bundle.weights import round_embeddings_int8

    bits, warnings = activation_bits(cfg.options.activation_bits)
    work = copy.deepcopy(model).float().eval()
    if cfg.options.int8_embeddings:  # the in-memory model must predict what its int8-embedding bundle will after reload
        round_embeddings_int8(work)
    total = len(linear_names(work))
    tuning, kept = None, []
    if cfg.options.int8_tolerance is None:
        quantized = quantize_linears(work, bits, inplace=True)
    else:
        if validation is None:
            raise ValueError(f"{cfg.name}: int8_tolerance needs the validation split (validation=)")
        quantized, kept, tuning = tune_fp32_layers(
            model, work, tokenizer, validation.texts, validation.labels, validation.max_length,
            activation_bits=bits, tolerance=cfg.options.int8_tolerance, max_fp32_layers=cfg.options.max_fp32_layers,
            progress=validation.progress)
        if kept:
            warnings.append(f"{len(kept)} of {total} Linear layers kept fp32 for accuracy (they run at fp32 "
                            f"speed): {', '.join(kept)}")
        if not tuning["within_tolerance"]:
            warnings.append(f"int8 validation accuracy {tuning['accuracy']:.4f} is {tuning['drop']:.4f} below fp32 "
                            f"({tuning['fp32_accuracy']:.4f}), more than int8_tolerance {cfg.options.int8_tolerance} with "
                            f"{len(kept)} fp32 layer(s) (max_fp32_layers {cfg.options.max_fp32_layers})")
    meta = {"activation_bits": bits, "fp32_layers": kept, "int8_layers": total - len(kept), "linear_layers": total,
            "int8_tuning": tuning}
    return Built(quantized, int8_embeddings=cfg.options.int8_embeddings, warnings=tuple(warnings), weights_meta=meta)


def restore(folder, weights: dict, skeleton):
    import warnings

    from compression.bundle.qlinear import LEGACY_BITS, int8_fast
    from compression.bundle.weights import quantize_dynamic_int8

    recorded = int(weights.get("activation_bits") or LEGACY_BITS)  # absent: made before the setting, with 7
    bits = 7 if recorded == 8 and not int8_fast(_flags()) else recorded
    model = quantize_dynamic_int8(skeleton(), inplace=True, activation_bits=bits,
                                  keep_fp32=weights.get("fp32_layers") or ())
    model = decode_weights(model, folder).eval()  # fp32 never needed
    model.load_warnings = ()
    if bits != recorded:
        warnings.warn(FALLBACK_WARNING, RuntimeWarning, stacklevel=2)
        model.load_warnings = (FALLBACK_WARNING,)
    return model


def advise(flags: dict) -> tuple[str, str]:
    if int8_fast(flags):
        return PAYS, "VNNI/AMX int8 instructions present (8-bit activations: the accurate int8)"
    return MAYBE, "no VNNI/AMX: int8 matmuls run without their fast path, with 7-bit activations"


TECHNIQUE = register(Technique(
    "dynamic-int8", "quantize", "int8 (torch dynamic)", apply, restore=restore, tolerance=1e-3, advise=advise,
    options=DynamicInt8Options, needs_validation=True, quantized=True,
    machine_key=lambda cfg: {"activation_bits": activation_bits(cfg.options.activation_bits)[0]},
    lab=LabChoice("dynamic int8", lambda base, teacher: {
        "name": f"{base}-int8", "source": base, "method": "dynamic-int8"})))
