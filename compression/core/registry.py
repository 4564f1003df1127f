"""The technique registry: one file per method says how it is built, what its bundle records, how the bundle is
restored, how close a reload must come and what the advisor says about it; this module maps method names to them.

torchao's shape: a recipe step (the config) says *what*, a registered :class:`Technique` says *how*. The recipe
validator, the pipeline, the bundle loader, the advisor and the dashboard's Lab all look methods up here; none of
them names one. Adding a method is one file with one ``register(...)`` call, listed in ``BUILTIN`` — or, for a
method of your own, a module named in ``COMPRESSION_LAB_TECHNIQUES`` (comma-separated) or an entry point in the
``compression_lab.techniques`` group. Methods never come from a bundle: a bundle names its method, and loading it
looks that name up among those registered here; it never imports code it names.

Technique modules import torch and friends inside their functions: loading the registry stays cheap.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import textwrap
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from compression.core.errors import LabError
from compression.core.typed import from_dict

Stage = Literal["student", "prune", "quantize"]
STAGES = ("student", "prune", "quantize")
BUILTIN = ("dynamic_int8", "onnx_int8", "bf16", "fp16", "onnx_fp32", "magnitude", "structured", "pretrained",
           "teacher_layers", "pretrained_layers")  # advice and choices are listed in this order
BUILTIN_PACKAGE = "compression.techniques"  # one module per built-in method, imported by name on first use
PLUGINS_ENV = "COMPRESSION_LAB_TECHNIQUES"
ENTRY_POINTS = "compression_lab.techniques"
PAYS, NO, MAYBE = "pays", "does not pay", "uncertain"


@dataclass(frozen=True)
class Built:
    """What a quantization technique made: the model to save (an ONNX bundle keeps it for its config only) and how
    the bundle stores it."""

    model: Any
    onnx_file: Path | None = None
    int8_embeddings: bool = False
    warnings: tuple[str, ...] = ()
    weights_meta: dict | None = None  # merged into bundle.json's ``weights``: what ``restore`` needs to rebuild it


@dataclass(frozen=True)
class Validation:
    """The labelled validation split a quantize technique with ``needs_validation`` receives (keyword
    ``validation=``) to tune itself on: never the test split, which only scores the result."""

    texts: tuple  # str, or (first, second) pairs for a pair task
    labels: tuple[int, ...]
    max_length: int
    progress: Callable[[float, str], None] | None = None  # (fraction done, message)


@dataclass(frozen=True)
class LabChoice:
    """How the dashboard's Lab offers a technique: a checkbox label and the recipe step it adds to a base variant."""

    label: str
    step: Callable[[str, str], dict]  # (base variant name, teacher reference) -> recipe step (plain data)


@dataclass(frozen=True)
class Technique:
    """One method. ``apply`` by stage:

    - student:  ``apply(cfg: StudentConfig, teacher_folder, labels) -> (tokenizer, model)``
    - prune:    ``apply(model, cfg: PruneConfig, batches) -> (model, details)`` (masks kept through recovery, or
      matrices shrunk; ``batches`` are validation batches for importance, made only when ``needs_batches``)
    - quantize: ``apply(model, tokenizer, cfg: QuantizeConfig, work_dir) -> Built`` (``model`` is fp32); with
      ``needs_validation``, also ``validation=`` a :class:`Validation` (keyword only: the 4-argument form stays the
      contract of every other method)

    ``options``: the method's own settings as a dataclass (defaults, ``metadata={"help": ...}``, checks in
    ``__post_init__`` raising ``ValueError`` that names the field). A recipe writes them beside the step's common
    keys (``{name: q, source: teacher, method: dynamic-int8, activation_bits: 8}``); the step's ``options`` holds
    them, typed; ``build --help`` and the dashboard's Lab list them from here.

    What the method changes elsewhere, each None for the generic behaviour:

    - ``save(model, folder) -> weights record``: write the weights into the bundle folder (safetensors; the
      config is written for it) and say how they are stored; None: plain Hugging Face safetensors, or the lab's
      codecs (int8 Linear and embeddings, bitmask sparsity, shrunk shapes), or an ONNX graph;
    - ``restore(folder, weights_meta, skeleton) -> runner`` rebuilds a bundle's model at load time; ``skeleton()``
      makes the fp32 model its config and recorded shapes describe. None: the generic loader is enough;
    - ``count(model) -> (total, non-zero)`` parameters, for weights kept outside ``parameters()``;
    - ``traceable``: whether the TorchScript runtime may trace its models (False: they run eager).

    ``tolerance``: how far reloaded probe logits may drift (None: by dtype). ``advise(flags) -> (verdict,
    reason)``: what the CPU's instruction sets say before anything is measured.
    """

    name: str
    stage: Stage
    label: str
    apply: Callable
    restore: Callable | None = None
    tolerance: float | None = None
    advise: Callable[[dict], tuple[str, str]] | None = None
    lab: LabChoice | None = None
    validate: Callable[[Any], None] | None = None  # checks the step's fields this method reads (ValueError)
    needs_batches: bool = False
    needs_validation: bool = False  # quantize: apply takes validation= (texts, labels) to tune on
    # What on this machine decides what it builds (e.g. int8 activation bits resolved from the CPU): part of the
    # variant's fingerprint, so a build elsewhere does not reuse a bundle made differently.
    machine_key: Callable[[Any], Any] | None = None
    quantized: bool = field(default=False)  # its bundles are not fp32: never a source for prune/quantize
    options: type | None = None  # its own settings (a dataclass), written beside the step's common keys
    save: Callable[[Any, Path], dict] | None = None
    count: Callable[[Any], tuple[int, int]] | None = None
    traceable: bool = True

    @property
    def module(self) -> str:
        """The module that implements it (its code digest is part of every fingerprint of what it builds)."""
        return self.apply.__module__

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"technique {self.name!r}: invalid stage {self.stage!r} (allowed: {', '.join(STAGES)})")
        if self.save is not None and self.restore is None:
            raise ValueError(f"technique {self.name!r}: a technique that saves its own weights must restore them "
                             f"(restore=...)")
        if self.options is not None and not dataclasses.is_dataclass(self.options):
            raise ValueError(f"technique {self.name!r}: options must be a dataclass, not {self.options!r}")

    def option_fields(self) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(self.options) if f.init] if self.options is not None else []

    def parse_options(self, given: Any, common: list[str]):
        """The step's own settings as this method's options dataclass, from a mapping (a recipe's extra keys), an
        instance, or None (the defaults). ``common``: the step's other keys, for the error that names them."""
        if self.options is not None and isinstance(given, self.options):
            return given
        given = dict(given or {})
        own = [f.name for f in self.option_fields()]
        unknown = [k for k in given if k not in own]
        if unknown:
            mine = f"; {self.name}'s own: {', '.join(own)}" if own else f"; {self.name} has no options of its own"
            raise ValueError(f"unknown key {unknown[0]!r} (allowed: {', '.join(common)}{mine})")
        return from_dict(self.options, given) if self.options is not None else None

    def describe(self) -> list[str]:
        """Lines for ``--help``: the method, its label, and each option with its default and help."""
        lines = [f"  {self.name}: {self.label}"]
        for f in self.option_fields():
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                default = f"default {value if isinstance(value, str) else json.dumps(value)}"
            else:
                default = "required"
            text = f"{f.name} ({default}): {f.metadata.get('help', '')}".rstrip(": ")
            lines.append(textwrap.fill(text, width=110, initial_indent="      ", subsequent_indent="        "))
        return lines


REGISTRY: dict[str, Technique] = {}
_loaded = threading.Lock()
_done: list[bool] = []


def register(technique: Technique) -> Technique:
    """Add a technique; a second one with the same name is an error (two files would claim one recipe word)."""
    known = REGISTRY.get(technique.name)
    if known is not None and known is not technique:
        raise ValueError(f"technique {technique.name!r} is registered twice ({known.module}, {technique.module})")
    REGISTRY[technique.name] = technique
    return technique


def load() -> dict[str, Technique]:
    """Import the built-in techniques and the operator's plugins, once per process."""
    with _loaded:
        if not _done:
            for name in BUILTIN:
                importlib.import_module(f"{BUILTIN_PACKAGE}.{name}")
            for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
                try:
                    importlib.import_module(module)
                except ImportError as err:
                    raise LabError(f"{PLUGINS_ENV} names {module!r}, which cannot be imported: {err}") from err
            _entry_points()
            # Built-ins in BUILTIN order whatever imported them first (listings and advice read stable), then plugins.
            position = {f"{BUILTIN_PACKAGE}.{m}": i for i, m in enumerate(BUILTIN)}
            ordered = sorted(REGISTRY.items(), key=lambda item: position.get(item[1].module, len(position)))
            REGISTRY.clear()
            REGISTRY.update(ordered)
            _done.append(True)
    return REGISTRY


def _entry_points() -> None:
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINTS):
        point.load()


def names(stage: Stage) -> list[str]:
    return [t.name for t in load().values() if t.stage == stage]


def get(name: str, stage: Stage | None = None) -> Technique:
    """The technique called ``name`` (of ``stage`` when given); LabError names the ones there are."""
    technique = load().get(name)
    if technique is None or (stage is not None and technique.stage != stage):
        allowed = names(stage) if stage else sorted(load())
        raise LabError(f"unknown {stage or ''} technique {name!r} (known: {', '.join(allowed)})".replace("  ", " "))
    return technique


def label(method: str | None) -> str | None:
    """A method's human label, or None when no technique has that name."""
    technique = load().get(method or "")
    return technique.label if technique else None


def bundle_technique(weights: dict) -> str | None:
    """The technique a bundle's ``weights`` record names; bundles written before the registry say it otherwise."""
    if weights.get("technique"):
        return weights["technique"]
    if weights.get("format") == "onnx":
        return "onnx-fp32"  # both ONNX methods restore alike: an ONNX Runtime session over model.onnx
    if weights.get("quantization") == "dynamic-int8":
        return "dynamic-int8"
    return {"bfloat16": "bf16", "float16": "fp16"}.get(weights.get("dtype"))


def is_quantized(weights: dict) -> bool:
    """Whether a bundle holds a quantized model (not a source for pruning or another quantization)."""
    name = bundle_technique(weights)
    return bool(name) and get(name).quantized


def help_text(stage: Stage) -> str:
    """Every technique of ``stage`` with its options, as ``--help`` lists them."""
    return "\n".join(line for t in load().values() if t.stage == stage for line in t.describe())


__all__ = ["help_text", "Built", "Validation", "LabChoice", "Technique", "REGISTRY", "register", "load", "names", "get", "label",
           "bundle_technique", "is_quantized", "PAYS", "NO", "MAYBE"]
