"""A variant on disk: a portable folder that reloads anywhere and proves it reproduces its own predictions.

Layout (v1)::

    config.json + one of             the model (safetensors or ONNX only: loading never unpickles)
      model.safetensors              plain Hugging Face weights (fp32 / bf16 / fp16): from_pretrained reads it
      weights.safetensors            lab-encoded: int8 + scales, bitmask-sparse, per-layer shapes of pruned models
      model.onnx                     an ONNX graph for ONNX Runtime
      (the technique's own files)    written by a technique's ``save`` hook, read by its ``restore``
    tokenizer files                  what AutoTokenizer.from_pretrained reads
    bundle.json                      format, name, kind, parent, recipe step, labels, max_length, metrics and the
                                     probe: fixed texts with the logits the model gave when it was saved

A bundle is written to a temporary sibling folder and renamed into place, so a killed save leaves no folder that
looks whole; ``verify_bundle`` reloads it in a fresh process and compares the probe logits before anyone records it.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from compression.bundle.meta import (
    FORMAT,
    META_FILE,
    PICKLE_SUFFIXES,
    VERSION,
    WEIGHTS_FILE,
    _write_json_atomic,
    file_hashes,
    read_meta,
)
from compression.bundle.pooling import pooled, pooling_of
from compression.core import registry as techniques
from compression.core.errors import LabError, failpoint
from compression.core.hardware import package_versions
from compression.core.texts import as_texts, char_length, encode, is_pairs

PROBE_TEXTS = (
    "A gripping, beautifully acted film that stays with you.",
    "Dull, overlong and painfully predictable.",
    "The plot is thin but the performances carry it.",
    "I have never been so bored in a cinema.",
    "Stocks rallied after the central bank held rates steady.",
    "The striker scored twice in the final minutes of the match.",
    "A new chip promises faster machine learning on laptops.",
    "it 's a charming and often affecting journey .",
    "not bad at all",
    "Le film est magnifique. 素晴らしい映画でした。 🎬",
)
# Pair tasks (paraphrase, entailment) probe with pairs: the reload check then covers segment ids and separators.
PROBE_PAIRS = (
    ("The company said its profits rose 5 percent.", "Profits at the company increased by five percent, it said."),
    ("A man is playing a guitar on stage.", "Nobody is playing any music."),
    ("How do I learn Python quickly?", "What is the fastest way to learn Python?"),
    ("The cat sat on the mat.", "A dog slept in the yard all afternoon."),
    ("He was arrested on Tuesday in Paris.", "Police detained him in Paris on Tuesday."),
    ("Stocks fell sharply after the report.", "The report lifted shares to a record high."),
    ("It rained all day.", "The weather was dry and sunny from morning to night."),
    ("Le film est magnifique.", "素晴らしい映画でした。 🎬"),
)
FP32_ATOL = 1e-4  # logits of a reloaded fp32 model: only kernel summation order differs


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    probabilities: dict[str, float]
    tokens: int = 0          # tokens the text has (special tokens included), before truncation
    truncated: bool = False  # True when the model read only its first max_length tokens


def token_positions(input_ids, attention_mask, sep_id: int | None) -> list[int]:
    """The real tokens' positions, less the second of two adjacent separators (RoBERTa/MPNet pairs)."""
    ids = input_ids.tolist()
    return [i for i, keep in enumerate(attention_mask.tolist())
            if keep and not (i > 0 and sep_id is not None and ids[i] == sep_id == ids[i - 1])]


class Bundle:
    """A loaded variant: tokenizer + model + metadata, ready to predict on CPU."""

    def __init__(self, folder: Path, meta: dict, tokenizer, model):
        import threading

        self.folder, self.meta, self.tokenizer, self.model = folder, meta, tokenizer, model
        self.labels: list[str] = list(meta["labels"])
        # A pair task's two input names (e.g. sentence1, sentence2); None for single-text classifiers.
        self.pair: tuple[str, str] | None = tuple(meta["pair"]) if meta.get("pair") else None
        self.max_length: int = int(meta["max_length"])
        self.onnx = meta.get("weights", {}).get("format") == "onnx"
        self.runtime: str | None = "onnxruntime" if self.onnx else None  # torch: decided on the first prediction
        self._run = None
        self._lock = threading.Lock()
        # A fast tokenizer keeps truncation/padding settings on its shared Rust object: concurrent calls with
        # different settings (the app serves several requests through one cached bundle) must take turns.
        self._tokenizer_lock = threading.Lock()

    def prepare(self) -> "Bundle":
        """Make the runtime ready now (a trace takes 0.5-4 s) rather than on the first prediction."""
        if not self.onnx:
            self._torch_runner()
        return self

    def _torch_runner(self):
        """The frozen TorchScript trace of the model (see bundle/runtime.py), made once; None runs the model eagerly."""
        with self._lock, self._tokenizer_lock:
            if self.runtime is None:
                from compression.bundle.runtime import trace

                name = techniques.bundle_technique(self.meta.get("weights", {}))
                if name and not techniques.get(name).traceable:
                    self._run, self.runtime = None, f"eager ({name} is not traced)"
                else:
                    self._run, self.runtime = trace(self.model, self.tokenizer, self.max_length,
                                                    pair=bool(self.pair))
        return self._run

    @property
    def name(self) -> str:
        return self.meta["name"]

    def check_texts(self, texts) -> list:
        """``texts`` as this variant reads them (pairs for a pair task), or a clear error for the wrong kind."""

        try:
            texts = as_texts(texts)
        except ValueError as err:
            raise LabError(str(err)) from None
        if texts and is_pairs(texts) != bool(self.pair):
            raise LabError(f"{self.name} classifies pairs of texts ({' + '.join(self.pair)}): give two texts each"
                           if self.pair else f"{self.name} classifies single texts, not pairs")
        return texts

    def logits(self, texts, batch_size: int = 32):
        """``(len(texts), num_labels)`` float32 numpy logits. Texts (pairs for a pair task) are padded per batch
        and truncated to max_length (a pair shares it, longest text first)."""
        return self.outputs(texts, batch_size)[0]

    def outputs(self, texts, batch_size: int = 32, layers: list[int] = (), tokens: bool = False, bf16=False):
        """Logits as :meth:`logits`, and with ``layers`` (1-based hidden-state indices) the first token's state at
        each of them: ``(len(texts), len(layers), hidden)`` float16, from the same forward pass (eager torch).

        With ``tokens``, every real token's states instead: one ``(tokens, len(layers), hidden)`` float16 array per
        text. A pair laid out ``<s> A </s></s> B </s>`` loses its doubled separator, so its positions are those of
        ``[CLS] A [SEP] B [SEP]``. ``bf16``: run eagerly under bf16 autocast (see training/teacher_targets.py)."""
        import numpy as np
        import torch

        states = None
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32), [] if tokens else states
        texts = self.check_texts(texts)
        if layers:
            if self.onnx:
                raise LabError(f"{self.name} runs in ONNX Runtime: its hidden states are not available")
            states = ([None] * len(texts) if tokens else
                      np.zeros((len(texts), len(layers), self.model.config.hidden_size), dtype=np.float16))
        # Batch texts of similar length together: far less padding, same logits.
        order = sorted(range(len(texts)), key=lambda i: char_length(texts[i]))
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        onnx, bf16 = self.onnx, bf16 and not self.onnx
        run = None if onnx or layers or bf16 else self._torch_runner()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for start in range(0, len(texts), batch_size):
                index = order[start:start + batch_size]
                with self._tokenizer_lock:
                    enc = encode(self.tokenizer, [texts[i] for i in index], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="np" if onnx else "pt")
                if onnx:
                    out[index] = self.model(enc)
                elif layers:
                    result = self.model(**enc, output_hidden_states=True)
                    out[index] = result.logits.float().numpy()
                    chosen = torch.stack([result.hidden_states[k] for k in layers], 2).half()  # (B, L, layers, H)
                    if tokens:
                        for row, i in enumerate(index):
                            states[i] = chosen[row][token_positions(enc["input_ids"][row], enc["attention_mask"][row],
                                                                    self.tokenizer.sep_token_id)].numpy()
                    else:
                        states[index] = chosen[:, 0].numpy()
                else:
                    out[index] = (run(enc) if run is not None else self.model(**enc).logits).float().numpy()
        return out, states

    def token_counts(self, texts) -> list[int]:
        """Tokens per text (a pair's both texts and separators) before truncation: did the model see all of it?"""

        with self._tokenizer_lock:
            encoded = encode(self.tokenizer, self.check_texts(texts), truncation=False, verbose=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def predict(self, texts, batch_size: int = 32) -> list[Prediction]:
        """Label, confidence and probabilities per text (or pair). Empty texts are refused; NUL bytes are dropped;
        texts longer than ``max_length`` tokens are truncated, and each prediction says so."""
        import numpy as np

        def clean(t):
            return str(t).replace("\x00", "")

        texts = [tuple(map(clean, t)) if isinstance(t, (tuple, list)) else clean(t) for t in texts]
        empty = [i + 1 for i, t in enumerate(texts)
                 if not all(part.strip() for part in (t if isinstance(t, tuple) else (t,)))]
        if empty:
            raise LabError(f"text {', '.join(map(str, empty[:5]))}{' …' if len(empty) > 5 else ''} is empty: give "
                           f"each text some words")
        logits = self.logits(texts, batch_size)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        counts = self.token_counts(texts)
        return [Prediction(self.labels[int(p.argmax())], float(p.max()),
                           {name: float(v) for name, v in zip(self.labels, p)}, n, n > self.max_length)
                for p, n in zip(probs, counts)]


def _is_sparse(model) -> bool:
    import torch

    return any(isinstance(m, torch.nn.Linear) and float((m.weight == 0).float().mean()) > 0.2 for m in model.modules())


def save_bundle(model, tokenizer, folder: str | Path, *, name: str, kind: str, labels: list[str], max_length: int,
                parent: str | None = None, step: dict | None = None, metrics: dict | None = None,
                extra: dict | None = None, int8_embeddings: bool = False, onnx_file: str | Path | None = None,
                warnings: list[str] | None = None, technique: str | None = None,
                weights_meta: dict | None = None, pair: tuple[str, str] | None = None) -> Path:
    """Write a variant as a bundle at ``folder`` (replacing an older one) and return its path.

    The weights format follows the model: plain Hugging Face safetensors when ``from_pretrained`` can read it back
    (fp32, bf16, fp16); the lab's encoded ``weights.safetensors`` for int8, sparse or structurally pruned models;
    ``model.onnx`` when ``onnx_file`` is given (``model`` then only lends its config). ``technique`` names the
    registered method whose ``restore`` rebuilds the model at load time (see compression/techniques), and
    ``weights_meta`` what that restore needs besides (e.g. int8 activation bits, layers kept fp32). ``pair`` names
    a pair task's two inputs (e.g. ``("sentence1", "sentence2")``): the bundle then reads and is probed with pairs.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.eval()
        tmp.mkdir()
        method = techniques.get(technique) if technique else None
        if method is not None and method.save is not None:  # the technique stores its own weights
            model.config.save_pretrained(tmp)
            written = {"format": "technique", **method.save(model, tmp)}
        else:
            written = _write_weights(model, tmp, int8_embeddings, onnx_file)
        weights = {**written, **(weights_meta or {}), "technique": technique}
        if weights.get("quantized_linears") and technique is None:
            raise ValueError("a model with quantized modules needs technique= (the registered method that "
                             "restores it at load time), e.g. technique='dynamic-int8'")
        tokenizer.save_pretrained(tmp)
        from compression.bundle.shapes import count_parameters

        # an ONNX bundle holds the same weights as the model it came from
        total, nonzero = (method.count if method is not None and method.count else count_parameters)(model)
        meta = dict(format=FORMAT, version=VERSION, name=name, kind=kind, parent=parent, step=step or {},
                    params={"total": total, "nonzero": nonzero},
                    labels=list(labels), max_length=int(max_length), metrics=metrics or {}, weights=weights,
                    warnings=list(warnings or []), created=time.time(),
                    versions=package_versions("torch", "transformers", "safetensors"), **(extra or {}))
        if pair:
            meta["pair"] = list(pair)
        if pooling_of(model) != "first":  # config.json holds it too; here for the model card
            meta["pooling"] = pooling_of(model)
        runner = _load_runner(tmp, meta) if onnx_file is not None else model
        texts = PROBE_PAIRS if pair else PROBE_TEXTS
        probe = Bundle(tmp, meta, tokenizer, runner).logits(texts)
        meta["probe"] = {"texts": [list(t) if pair else t for t in texts], "logits": probe.tolist(),
                         "atol": _tolerance(weights)}
        meta["files"] = file_hashes(tmp)
        _write_json_atomic(tmp / META_FILE, meta)
        failpoint("bundle.before-rename")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _write_weights(model, folder: Path, int8_embeddings: bool, onnx_file) -> dict:
    """Write the model's weights into ``folder``; returns how they are stored (``bundle.json``'s ``weights``)."""
    from compression.bundle.shapes import structure
    from compression.bundle.weights import quantized_linears

    shapes = structure(model)
    quantized = bool(quantized_linears(model))
    if onnx_file is not None:
        shutil.copyfile(onnx_file, folder / "model.onnx")
        model.config.save_pretrained(folder)
        return {"format": "onnx", "runtime": "onnxruntime"}
    if quantized or shapes or int8_embeddings or _is_sparse(model):
        from safetensors.torch import save_file

        from compression.bundle.weights import encode

        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        model.config.save_pretrained(folder)
        tensors, metadata = encode(model, int8_embeddings=int8_embeddings)
        save_file(tensors, str(folder / WEIGHTS_FILE), metadata=metadata)
        return {"format": "lab", "quantized_linears": quantized, "embeddings": "rowint8" if int8_embeddings else None,
                "structure": shapes, "dtype": str(dtype).replace("torch.", "") if dtype is not None else "float32"}
    model.save_pretrained(folder, safe_serialization=True)
    return {"format": "hf", "dtype": str(next(model.parameters()).dtype).replace("torch.", "")}


def _tolerance(weights: dict) -> float:
    """How far reloaded probe logits may drift: the technique's own figure, else by precision (reduced precision
    legitimately rounds differently per process)."""

    name = techniques.bundle_technique(weights)
    if name and techniques.get(name).tolerance is not None:
        return techniques.get(name).tolerance
    if weights.get("dtype") in ("bfloat16", "float16"):
        return 2e-2
    return FP32_ATOL


def _load_runner(folder: Path, meta: dict):
    """The model object a bundle predicts with: the bundle's technique restores it when it knows how; otherwise
    plain Hugging Face weights load with ``from_pretrained`` and the lab's encoded ones into a rebuilt skeleton.
    The technique is looked up among those registered in this process: a bundle never brings code of its own."""

    weights = meta.get("weights", {"format": "hf"})
    name = techniques.bundle_technique(weights)
    technique = techniques.get(name) if name else None
    if technique is not None and technique.restore is not None:
        return technique.restore(folder, weights, lambda: skeleton(folder, weights))
    if weights["format"] == "lab":
        return decode_weights(skeleton(folder, weights), folder).eval()
    from transformers import AutoModelForSequenceClassification

    return pooled(AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=False,
                                                                     use_safetensors=True, dtype="auto")).eval()


def skeleton(folder: Path, weights: dict):
    """An untrained model shaped like the bundle's: its config, the per-layer shapes structured pruning recorded,
    its dtype. Weights are loaded into it afterwards."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from compression.bundle.shapes import apply_structure

    model = pooled(AutoModelForSequenceClassification.from_config(
        AutoConfig.from_pretrained(folder, trust_remote_code=False)).float())
    if weights.get("structure"):
        apply_structure(model, weights["structure"])
    if weights.get("dtype") in ("bfloat16", "float16"):
        model = model.to(getattr(torch, weights["dtype"]))
    return model


def decode_weights(model, folder: Path):
    """Load the lab's encoded ``weights.safetensors`` into ``model`` (whose modules already match) and return it."""
    from safetensors import safe_open

    from compression.bundle.weights import decode_into

    with safe_open(str(Path(folder) / WEIGHTS_FILE), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata()
    decode_into(model, tensors, metadata)
    return model


def load_bundle(folder: str | Path) -> Bundle:
    """Load a bundle folder (any weights format). Refuses pickle-based weights and remote code."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    meta = read_meta(folder)
    pickled = [p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
    if pickled:
        raise LabError(f"bundle {folder} holds pickle-based weights ({', '.join(pickled)}); only safetensors are loaded")
    fmt = meta.get("weights", {}).get("format", "hf")
    if fmt == "technique":  # written by a technique's own save hook: its restore knows the files (hashes checked)
        techniques.get(techniques.bundle_technique(meta["weights"]) or "")
    else:
        expected = {"hf": "model.safetensors", "lab": WEIGHTS_FILE, "onnx": "model.onnx"}.get(fmt)
        if expected is None:
            raise LabError(f"bundle {folder} has an unknown weights format {fmt!r}")
        if not (folder / expected).is_file():
            raise LabError(f"bundle {folder} is broken: {expected} is missing")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        runner = _load_runner(folder, meta)
        meta["warnings"] = [*meta.get("warnings", []), *getattr(runner, "load_warnings", ())]  # e.g. a fallback
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise LabError(f"bundle {folder} is broken: {str(err).splitlines()[0][:200]}") from err
    return Bundle(folder, meta, tokenizer, runner)



