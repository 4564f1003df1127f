"""Typed recipe configs and a strict loader: unknown keys and bad values are errors that name the field.

A recipe is a YAML (or JSON) file whose sections map one-to-one onto these dataclasses.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from compression.core import registry as techniques
from compression.core.typed import _check, from_dict

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_RECIPE_BYTES = 1 << 20



def check_name(value: str, where: str) -> None:
    """Names become folder names: letters, digits, '_', '-', '.', at most 64, no path separators."""
    _check(isinstance(value, str) and bool(NAME.match(value)) and value not in (".", ".."), where, value,
           "1-64 letters, digits, '_', '-', '.', starting with a letter or digit")


@dataclass
class DataConfig:
    """Where the labelled text comes from and how much of it to use."""

    source: str = field(default="embedded:rotten-tomatoes", metadata={
        "help": "embedded:rotten-tomatoes, a CSV/TSV/JSONL/Parquet file, a folder of train/validation/test "
                "files, or a Hub data set id (glue/sst2, user/name:config)"})
    text_column: str | None = field(default=None, metadata={"help": "text column; detected when omitted"})
    text_pair_column: str | None = field(default=None, metadata={
        "help": "second text column of a pair task (paraphrase, entailment); detected when omitted from "
                "sentence1/sentence2, premise/hypothesis, question1/question2, question/sentence"})
    label_column: str | None = field(default=None, metadata={"help": "label column; detected when omitted"})
    label_names: list[str] | None = field(default=None, metadata={"help": "names for int labels 0..K-1"})
    max_train_samples: int | None = field(default=None, metadata={"help": "seeded subset of train"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "seeded subset of validation"})
    max_test_samples: int | None = field(default=None, metadata={"help": "seeded subset of test"})
    selection: str | None = field(default=None, metadata={
        "help": "labelled data (same columns) split once, seeded, into a tuning half that replaces validation "
                "(checkpoints are chosen on it) and a reporting half every variant is also scored on (the "
                "held-out figure); it must share no text with test"})
    seed: int = 42

    def __post_init__(self):
        _check(bool(self.source and self.source.strip()), "source", self.source, "a non-empty reference")
        _check(self.selection is None or bool(self.selection.strip()), "selection", self.selection,
               "a non-empty data reference or null")
        for name in ("max_train_samples", "max_eval_samples", "max_test_samples"):
            value = getattr(self, name)
            _check(value is None or value >= 1, name, value, "an integer >= 1 or null")
        if self.label_names is not None:
            _check(len(self.label_names) >= 2 and len(set(self.label_names)) == len(self.label_names),
                   "label_names", self.label_names, "at least two distinct names")


@dataclass
class TrainConfig:
    """How a model is trained (teacher fine-tuning or student distillation) with ``transformers.Trainer``."""

    epochs: float = field(default=3.0, metadata={"help": "passes over the training split"})
    max_steps: int | None = field(default=None, metadata={"help": "stop after this many optimizer steps"})
    learning_rate: float = 5e-5
    batch_size: int = field(default=32, metadata={"help": "per device; x devices x grad accumulation = global"})
    eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    evals_per_epoch: int = field(default=1, metadata={"help": "validation passes (and resumable checkpoints) per "
                                                               "epoch; the best one is kept"})
    group_by_length: bool = field(default=True, metadata={
        "help": "batch texts of similar length together: far less padding, so much faster on short texts"})
    bf16: Literal["auto", "on", "off"] = field(default="auto", metadata={
        "help": "bf16 autocast: auto = on where the CPU has AVX512-BF16/AMX or the GPU supports it"})
    ema_decay: float = field(default=0.0, metadata={
        "help": "0: off; else (e.g. 0.999) validation, the checkpoint kept and the saved model use an exponential "
                "moving average of the weights, updated after every step (its horizon, 1 / (1 - decay) steps, "
                "should be well below the run's steps)"})

    select_by: Literal["accuracy", "int8"] = field(default="accuracy", metadata={
        "help": "the validation score that picks the checkpoint kept: accuracy = the model's own; int8 = its dynamic "
                "int8 copy's, as this CPU runs it (for a student whose purpose is an int8 variant; one more "
                "validation pass per evaluation)"})

    def __post_init__(self):
        _check(self.select_by in ("accuracy", "int8"), "select_by", self.select_by, "accuracy or int8")
        _check(0 <= self.ema_decay < 1, "ema_decay", self.ema_decay, "0 (off) or 0 < decay < 1")
        _check(self.epochs > 0, "epochs", self.epochs, "a number > 0")
        _check(self.max_steps is None or self.max_steps >= 1, "max_steps", self.max_steps, ">= 1 or null")
        _check(0 < self.learning_rate < 1, "learning_rate", self.learning_rate, "0 < lr < 1")
        for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps", "evals_per_epoch"):
            _check(getattr(self, name) >= 1, name, getattr(self, name), "an integer >= 1")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0")
        _check(0 <= self.warmup_ratio < 1, "warmup_ratio", self.warmup_ratio, "0 <= ratio < 1")


@dataclass
class TeacherConfig:
    """The model every variant is compared against."""

    model: str = field(default="embedded:minilm-l6", metadata={
        "help": "embedded:minilm-l6, embedded:mpnet-base, a local model folder or a Hub id"})
    name: str = "teacher"
    max_length: int = field(default=128, metadata={"help": "tokens per text; longer texts are truncated"})
    train: TrainConfig | None = field(default_factory=TrainConfig, metadata={
        "help": "fine-tuning settings; null uses the model as it is (an already fine-tuned classifier)"})

    def __post_init__(self):
        check_name(self.name, "name")
        _check(bool(self.model and self.model.strip()), "model", self.model, "a non-empty reference")
        _check(8 <= self.max_length <= 512, "max_length", self.max_length, "8..512")


@dataclass
class DistillConfig:
    """The distillation loss: ``alpha * CE + (1 - alpha) * T^2 * KL``, plus optional intermediate-layer terms."""

    alpha: float = field(default=0.5, metadata={"help": "weight of the gold-label cross-entropy, in [0, 1]"})
    temperature: float = field(default=2.0, metadata={"help": "softmax temperature T > 0"})
    hidden_weight: float = field(default=0.0, metadata={
        "help": "weight of hidden-state MSE: with the teacher's tokenizer every token's state (teacher in the loop); "
                "with another tokenizer that cuts the texts alike (checked), the states hidden_positions names, "
                "standardised per dimension and cached in the teacher's labelling passes"})
    hidden_positions: Literal["first", "tokens"] = field(default="first", metadata={
        "help": "with another tokenizer: first = the first token's state; tokens = every token's state (fp16, "
                "memory-mapped on disk: about 1.5 KB per token and mapped layer for a 768-wide teacher)"})
    attention_weight: float = field(default=0.0, metadata={
        "help": "weight of attention KL (needs the teacher's tokenizer; runs the teacher in the loop)"})
    layer_map: list[int] | None = field(default=None, metadata={
        "help": "teacher layer (1-based) for each student layer; uniform when omitted"})

    def __post_init__(self):
        _check(0.0 <= self.alpha <= 1.0, "alpha", self.alpha, "0 <= alpha <= 1")
        _check(self.temperature > 0, "temperature", self.temperature, "a number > 0")
        _check(self.hidden_weight >= 0, "hidden_weight", self.hidden_weight, ">= 0")
        _check(self.hidden_positions in ("first", "tokens"), "hidden_positions", self.hidden_positions,
               "first or tokens")
        _check(self.attention_weight >= 0, "attention_weight", self.attention_weight, ">= 0")
        _check(self.layer_map is None or all(i >= 1 for i in self.layer_map), "layer_map", self.layer_map,
               "teacher layer numbers >= 1")

    @property
    def intermediate(self) -> bool:
        return self.hidden_weight > 0 or self.attention_weight > 0


TRANSFER_FIELDS = ("transfer", "exclude", "max_transfer")


@dataclass
class AugmentConfig:
    """Teacher-labelled extra text for every distillation stage: perturbed copies of the longer training texts and
    an optional transfer set of unlabelled in-domain texts."""

    copies: int = field(default=1, metadata={"help": "new texts made from each chosen training text (0: none)"})
    min_words: int = field(default=10, metadata={
        "help": "only training texts with at least this many words are perturbed (sentence-like text)"})
    max_texts: int | None = field(default=None, metadata={"help": "seeded subset of the chosen training texts"})
    replace: float = field(default=0.3, metadata={
        "help": "probability that a word is replaced by one of its embedding neighbours"})
    neighbours: int = field(default=15, metadata={
        "help": "nearest words (cosine, teacher's word embeddings) a replacement is drawn from"})
    transfer: str | None = field(default=None, metadata={
        "help": "transfer set: a data reference (embedded:rotten-tomatoes, a file, a folder) whose texts, labels "
                "ignored, are labelled by the teacher; texts that largely repeat a text of the data are dropped"})
    exclude: list[str] = field(default_factory=list, metadata={
        "help": "data references whose texts are also kept out of the transfer set (e.g. a held-out set)"})
    max_transfer: int | None = field(default=None, metadata={
        "help": "seeded subset of the transfer set's new texts (labelling costs one teacher pass per text)"})
    swap: bool = field(default=False, metadata={
        "help": "pair tasks: every training pair also in the other order (B, A), labelled by the teacher like the "
                "copies (it says what a swapped pair is where the relation is not symmetric)"})

    def __post_init__(self):
        _check(self.copies >= 0, "copies", self.copies, "an integer >= 0")
        for name in ("min_words", "neighbours"):
            _check(getattr(self, name) >= 1, name, getattr(self, name), "an integer >= 1")
        _check(self.max_texts is None or self.max_texts >= 1, "max_texts", self.max_texts, ">= 1 or null")
        _check(0 < self.replace <= 1, "replace", self.replace, "0 < replace <= 1")
        _check(self.copies >= 1 or self.transfer is not None or self.swap, "copies", self.copies,
               ">= 1 unless a transfer set or swap is given (otherwise augmentation adds nothing)")
        _check(self.transfer is None or bool(self.transfer.strip()), "transfer", self.transfer,
               "a non-empty data reference or null")
        _check(not self.exclude or self.transfer is not None, "exclude", self.exclude,
               "only with a transfer set (copies never equal a data text already)")
        _check(self.max_transfer is None or (self.max_transfer >= 1 and self.transfer is not None), "max_transfer",
               self.max_transfer, "an integer >= 1 with a transfer set, or null")

    def key(self) -> dict:
        """What a student's fingerprint records: the transfer and swap settings only when set, so recipes written
        before they existed keep their fingerprints."""
        out = dataclasses.asdict(self)
        return {k: v for k, v in out.items() if k not in (*TRANSFER_FIELDS, "swap") or v}


OPTIONS_HELP = {"help": "the method's own settings, written beside the step's other keys (e.g. sparsity: 0.5 for "
                        "magnitude); `python -m compression build --help` lists each method's"}


class _Step:
    """What the three kinds of recipe step share: a registered technique by name, and its own options."""

    OPTIONS_FIELD: ClassVar[str] = "options"  # typed.from_dict gathers the method's own keys here
    STAGE: ClassVar[str]
    METHOD_FIELD: ClassVar[str] = "method"

    def __post_init__(self):
        check_name(self.name, "name")
        if hasattr(self, "source"):  # prune and quantize steps start from an earlier variant
            check_name(self.source, "source")
        self._check_technique()

    def _check_technique(self) -> None:
        """The method must be a registered technique of this stage; its options are parsed by its dataclass;
        then the technique checks what else of the step it reads."""
        method = getattr(self, self.METHOD_FIELD)
        allowed = techniques.names(self.STAGE)
        _check(method in allowed, self.METHOD_FIELD, method, ", ".join(allowed))
        technique = techniques.get(method, self.STAGE)
        common = [f.name for f in dataclasses.fields(self) if f.init and f.name != self.OPTIONS_FIELD]
        self.options = technique.parse_options(self.options, common)
        if technique.validate is not None:
            technique.validate(self)

    def to_dict(self) -> dict:
        """The step as a recipe writes it: the method's options beside the common keys."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != self.OPTIONS_FIELD}
        out = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in out.items()}
        return {**out, **(dataclasses.asdict(self.options) if self.options is not None else {})}


@dataclass
class StudentConfig(_Step):
    """A student: where its weights start, and how it is distilled from the teacher."""

    STAGE: ClassVar[str] = "student"
    METHOD_FIELD: ClassVar[str] = "init"

    name: str
    init: str = field(default="pretrained", metadata={
        "help": "a student technique: pretrained: a small backbone as is; teacher-layers: a copy of the teacher "
                "keeping some layers (DistilBERT-style); pretrained-layers: a small backbone keeping some layers"})
    model: str | None = field(default=None, metadata={"help": "backbone for pretrained / pretrained-layers"})
    layers: list[int] | None = field(default=None, metadata={
        "help": "0-based layers to keep for *-layers; every other layer when omitted"})
    max_length: int = 128
    pooling: Literal["first", "mean"] = field(default="first", metadata={
        "help": "what the classifier head reads: first = the first token's last state (BERT's own head); mean = "
                "the mean of the real tokens' last states, as all-MiniLM-L6-v2 was trained (BERT-architecture "
                "students; recorded in the bundle's config.json, honoured by every runtime)"})
    distill: DistillConfig = field(default_factory=DistillConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    options: Any = field(default=None, metadata=OPTIONS_HELP)

    def __post_init__(self):
        _check(8 <= self.max_length <= 512, "max_length", self.max_length, "8..512")
        _check(self.pooling in ("first", "mean"), "pooling", self.pooling, "first or mean")
        super().__post_init__()


PRUNE_TARGETS = [r"encoder\.layer\.\d+\..*\.weight$"]


@dataclass
class PruneConfig(_Step):
    """A pruning step applied to an earlier variant, with an optional recovery fine-tune (distilled from the teacher)."""

    STAGE: ClassVar[str] = "prune"

    name: str
    source: str = field(metadata={"help": "the variant to prune: the teacher, a student or an earlier step"})
    method: str = field(default="magnitude", metadata={
        "help": "a pruning technique (magnitude, structured, or a plugin's); its own keys: `build --help`"})
    recover: TrainConfig | None = field(default=None, metadata={
        "help": "recovery fine-tune after pruning (masks stay in force); null skips it"})
    distill: DistillConfig = field(default_factory=DistillConfig)
    options: Any = field(default=None, metadata=OPTIONS_HELP)


@dataclass
class QuantizeConfig(_Step):
    """A quantization step applied to an earlier (fp32) variant."""

    STAGE: ClassVar[str] = "quantize"

    name: str
    source: str = field(metadata={"help": "the fp32 variant to quantize"})
    method: str = field(default="dynamic-int8", metadata={
        "help": "a quantization technique (dynamic-int8, onnx-int8, bf16, fp16, onnx-fp32, or a plugin's); its own "
                "keys: `build --help`"})
    options: Any = field(default=None, metadata=OPTIONS_HELP)


@dataclass
class BenchConfig:
    """How much the benchmark stage measures. Defaults give medians stable within a few percent on a quiet machine."""

    samples: int = field(default=64, metadata={"help": "test sentences timed one at a time (batch 1)"})
    repeats: int = field(default=3, metadata={"help": "interleaved rounds over all variants"})
    warmup: int = field(default=8, metadata={"help": "untimed predictions per variant first"})
    batch_size: int = field(default=32, metadata={"help": "throughput batch"})
    throughput_batches: int = field(default=4, metadata={"help": "batches timed per variant per round"})
    threads: int | None = field(default=None, metadata={"help": "torch / ONNX Runtime threads; default: usable cores"})
    memory: bool = field(default=True, metadata={"help": "peak memory of each variant, in a child process"})
    seed: int = 0

    def __post_init__(self):
        for name in ("samples", "repeats", "batch_size", "throughput_batches"):
            _check(getattr(self, name) >= 1, name, getattr(self, name), "an integer >= 1")
        _check(self.warmup >= 0, "warmup", self.warmup, "an integer >= 0")
        _check(self.threads is None or self.threads >= 1, "threads", self.threads, "an integer >= 1 or null")


@dataclass
class Recipe:
    """A whole build: data, teacher and (in later stages) the variants made from it."""

    name: str
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    students: list[StudentConfig] = field(default_factory=list)
    prune: list[PruneConfig] = field(default_factory=list)
    quantize: list[QuantizeConfig] = field(default_factory=list)
    augment: AugmentConfig | None = field(default=None, metadata={
        "help": "teacher-labelled extra texts (perturbed copies, a transfer set) for the students and pruning "
                "recovery"})
    bench: BenchConfig | None = field(default_factory=BenchConfig)
    seed: int = 42
    description: str = ""

    def __post_init__(self):
        check_name(self.name, "name")
        names = [self.teacher.name] + [s.name for s in self.students]
        for section in ("prune", "quantize"):  # steps chain: each source must be made before the step
            for i, step in enumerate(getattr(self, section)):
                _check(step.source in names, f"{section}[{i}].source", step.source,
                       f"an earlier variant: {', '.join(names)}")
                names.append(step.name)
        duplicate = next((n for n in names if names.count(n) > 1), None)
        _check(duplicate is None, "name", duplicate, "variant names unique within the recipe (teacher included)")
        quantized = {q.name for q in self.quantize}
        bad = next((q for q in self.quantize if q.source in quantized), None)
        _check(bad is None, "quantize.source", bad and bad.source, "an fp32 variant (not an already quantized one)")

    def to_dict(self) -> dict:
        """The recipe as plain data, steps written as a recipe file writes them (options beside the common keys)."""
        out = dataclasses.asdict(self)
        for section in ("students", "prune", "quantize"):
            out[section] = [step.to_dict() for step in getattr(self, section)]
        return out


# ---------------------------------------------------------------- strict loading


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file (YAML or JSON)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    if path.stat().st_size > MAX_RECIPE_BYTES:
        raise ValueError(f"recipe {path} is larger than {MAX_RECIPE_BYTES // 1024} KiB")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise ValueError(f"recipe {path} is not valid YAML/JSON: {str(err).splitlines()[0]}") from err
    if isinstance(data, dict):
        data.setdefault("name", path.stem)
    return from_dict(Recipe, data)


__all__ = ["DataConfig", "TrainConfig", "TeacherConfig", "DistillConfig", "AugmentConfig", "StudentConfig",
           "PruneConfig", "QuantizeConfig", "BenchConfig", "Recipe", "from_dict", "load_recipe", "check_name"]
