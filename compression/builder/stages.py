"""The stages a build runs, one function each: teacher, augmented training data, student, pruning, quantization
and the benchmark. ``pipeline.build`` decides what runs (reuse, fingerprints, order); these make the variants.

Each takes the build's shared state (:class:`~compression.builder.state.BuildState`): the recipe, the store, the data and teacher logits, the
folders of the variants made so far. Only the main process writes bundles and touches the store.
"""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path

from compression.builder.state import BuildState
from compression.bundle.folder import load_bundle, save_bundle
from compression.bundle.pooling import pooled
from compression.core import registry as techniques
from compression.core.config import PRUNE_TARGETS
from compression.core.digest import code_digest, fingerprint
from compression.core.errors import LabError, failpoint
from compression.core.hardware import cpu_info
from compression.core.texts import texts_of
from compression.data.align import check_alignment
from compression.data.loading import load_texts
from compression.data.sources import load_tokenizer_and_model
from compression.evaluation.metrics import score_logits


def teacher(b: BuildState) -> None:
    """Load (and fine-tune) the teacher, save, verify, evaluate and record it (the main process writes)."""
    from transformers import set_seed

    from compression.training.distill import tokenize, train

    cfg, data = b.recipe.teacher, b.data
    b.report("teacher", 0, f"loading teacher {cfg.model}")
    set_seed(b.recipe.seed)  # a new classifier head starts from the recipe's seed
    tokenizer, model = load_tokenizer_and_model(cfg.model, data.labels)
    model = pooled(model)  # a lab bundle as the teacher keeps the pooling it learned with
    timings = {}
    if cfg.train is not None:
        t = time.perf_counter()
        model = train(model, tokenizer, tokenize(data, tokenizer, cfg.max_length), cfg.train,
                      b.stage_dirs[cfg.name], b.recipe.seed, cfg.name, progress=b.trainer_progress("teacher"))
        timings["train_seconds"] = round(time.perf_counter() - t, 2)
    if not b.procs.main:
        return
    save_bundle(model, tokenizer, b.folders[cfg.name], name=cfg.name, kind="teacher", labels=data.labels,
                max_length=cfg.max_length, step={"stage": "teacher", **dataclasses.asdict(cfg)}, pair=data.pair,
                extra={"source": cfg.model, "data": {"source": data.source, "fingerprint": data.fingerprint}})
    check = b.verify(cfg.name, timings)
    t = time.perf_counter()

    test, bundle = data.splits["test"], load_bundle(b.folders[cfg.name])
    b.teacher_test_logits = bundle.logits(texts_of(test), batch_size=64)  # the logits stage needs them too
    metrics = score_logits(b.teacher_test_logits, test["label"]) | b.heldout_metrics(bundle)
    timings["evaluate_seconds"] = round(time.perf_counter() - t, 2)
    b.finish(cfg.name, metrics, timings, check, b.teacher_test_logits)


def training_data(b: BuildState) -> None:
    """What distillation trains on: the data, plus the augmented texts. Made when the first stage trains, so a
    rerun that reuses every student never pays for labelling them."""
    if b.train_data is None:
        if b.recipe.augment is None:
            b.train_data, b.train_logits = b.data, b.logits
        else:
            augment(b)


def transfer_texts(b: BuildState, data_dir) -> None:
    """The transfer set's texts that are new: none largely repeats a text of the data or of ``exclude``."""
    from compression.data.augment import new_texts

    cfg, t = b.recipe.augment, time.perf_counter()
    known = list(b.data.splits["train"]["text"]) + evaluated_texts(b.data)
    for ref in cfg.exclude:
        known += load_texts(ref, data_dir)
    found = load_texts(cfg.transfer, data_dir)
    fresh = new_texts(found, known)
    b.transfer_texts = fresh
    if cfg.max_transfer is not None and len(fresh) > cfg.max_transfer:
        b.transfer_texts = random.Random(b.recipe.seed).sample(fresh, cfg.max_transfer)
    b.report("data", 1, f"transfer set {cfg.transfer}: {len(fresh):,} of {len(found):,} texts are new "
                        f"(the rest largely repeat a text of the data{' or of exclude' if cfg.exclude else ''}); "
                        f"using {len(b.transfer_texts):,} ({time.perf_counter() - t:.1f} s)")


def evaluated_texts(data) -> list[str]:
    """Texts a figure is chosen or reported on (validation, test, a selection set's reporting half): extra
    training text must not repeat them."""
    held = [data.heldout] if data.heldout is not None else []
    return [text for split in [data.splits["validation"], data.splits["test"], *held] for text in texts_of(split)]


def augment(b: BuildState) -> None:
    """Teacher-labelled texts appended to the training split: swapped training pairs, perturbed copies of the
    longer training texts and the transfer set's new texts."""
    import numpy as np
    from datasets import Dataset, DatasetDict, concatenate_datasets

    from compression.training.teacher_targets import teacher_augmented, teacher_transfer

    t, cfg = time.perf_counter(), b.recipe.augment
    train = b.data.splits["train"]
    teacher = b.folders[b.recipe.teacher.name]
    texts, logits = [], np.zeros((0, len(b.data.labels)), dtype=np.float32)
    with b.procs.main_first():  # main computes and caches; the others then read the cache
        if cfg.copies or cfg.swap:
            texts, logits = teacher_augmented(teacher, texts_of(train), cfg, b.recipe.seed, b.store.root / "cache",
                                              lambda f, m: b.report("augment", f, m, log=False),
                                              other_texts=evaluated_texts(b.data), layers=b.cached_layers,
                                              tokens=b.cached_tokens)
            b.extra_texts.append(texts)
        if b.transfer_texts:
            texts = texts + b.transfer_texts
            logits = np.concatenate([logits, teacher_transfer(teacher, b.transfer_texts, b.store.root / "cache",
                                                              lambda f, m: b.report("augment", f, m, log=False),
                                                              layers=b.cached_layers,
                                                              tokens=b.cached_tokens)])
            b.extra_texts.append(b.transfer_texts)
    columns = {"text": texts}
    if b.data.pair:  # swapped pairs, copies of pairs
        columns = {"text": [a for a, _ in texts], "text_pair": [second for _, second in texts]}
    extra = Dataset.from_dict({**columns, "label": logits.argmax(-1).tolist()}, features=train.features)
    b.train_data = dataclasses.replace(b.data, splits=DatasetDict({**b.data.splits,
                                                                   "train": concatenate_datasets([train, extra])}))
    b.train_logits = {**b.logits, "train": np.concatenate([b.logits["train"], logits])}
    b.report("augment", 1, f"augment: {len(texts):,} teacher-labelled texts join the {len(train):,} training texts "
                           f"({time.perf_counter() - t:.1f} s)")


def student(b: BuildState, cfg) -> None:
    from transformers import set_seed

    from compression.training.distill import tokenize, train

    training_data(b)
    teacher_dir = b.folders[b.recipe.teacher.name]
    b.report(cfg.name, 0, f"{cfg.name}: building student ({cfg.init}{' of ' + cfg.model if cfg.model else ''})")
    set_seed(b.recipe.seed)  # its new head starts alike wherever the student stands in the recipe (and resumed)
    tokenizer, model = techniques.get(cfg.init, "student").apply(cfg, teacher_dir, b.data.labels)
    model = pooled(model, cfg.pooling)
    teacher_model, states, extra = None, None, {}
    if cfg.name in b.state_layers:
        states, extra["hidden_states"] = cached_states(b, cfg, tokenizer)
    elif cfg.distill.intermediate:
        teacher_model = teacher_in_loop(cfg, tokenizer, teacher_dir)
    t = time.perf_counter()
    dataset = tokenize(b.train_data, tokenizer, cfg.max_length, b.train_logits, rows=states is not None)
    model = train(model, tokenizer, dataset, cfg.train, b.stage_dirs[cfg.name], b.recipe.seed, cfg.name,
                  distill=cfg.distill, teacher_model=teacher_model, progress=b.trainer_progress(cfg.name),
                  states=states)
    timings = {"train_seconds": round(time.perf_counter() - t, 2)}
    if not b.procs.main:
        return
    save_bundle(model, tokenizer, b.folders[cfg.name], name=cfg.name, kind="student", labels=b.data.labels,
                max_length=cfg.max_length, parent=b.recipe.teacher.name, technique=cfg.init, pair=b.data.pair,
                step={"stage": "student", **cfg.to_dict()},
                extra={"data": {"source": b.data.source, "fingerprint": b.data.fingerprint}, **extra})
    b.evaluate_and_finish(cfg.name, timings, b.verify(cfg.name, timings))


def attention_refusal(cfg):
    return LabError(f"{cfg.name}: attention distillation needs the teacher's tokenizer, and {cfg.model} tokenizes "
                    f"differently; set distill.attention_weight to 0 (hidden states and logits distill across "
                    f"tokenizers that cut texts alike)")


def teacher_in_loop(cfg, tokenizer, teacher_dir):
    """The teacher model for hidden-state/attention distillation with a shared tokenizer (every token matched)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from compression.training.distill import shares_tokenizer

    if not shares_tokenizer(tokenizer, AutoTokenizer.from_pretrained(teacher_dir, trust_remote_code=False)):
        raise attention_refusal(cfg)
    return pooled(AutoModelForSequenceClassification.from_pretrained(teacher_dir, trust_remote_code=False,
                                                                     use_safetensors=True))


def cached_states(b: BuildState, cfg, tokenizer):
    """The teacher's cached states (first token's or every token's) for a student with another tokenizer, after
    checking on every training text that both tokenizers cut it alike; and what the bundle records of it."""
    import numpy as np
    from transformers import AutoTokenizer

    from compression.training.cached_states import CachedStates, CachedTokenStates
    from compression.training.teacher_targets import teacher_states

    if cfg.distill.attention_weight > 0:
        raise attention_refusal(cfg)
    teacher_dir = b.folders[b.recipe.teacher.name]
    texts = texts_of(b.train_data.splits["train"])
    t = time.perf_counter()
    found = check_alignment(tokenizer, AutoTokenizer.from_pretrained(teacher_dir, trust_remote_code=False), texts,
                            cfg.name)
    # Cached per part, as each was labelled: the data's texts in the logits pass, augmented and transfer texts in
    # theirs.
    parts = [texts[:len(b.data.splits["train"])], *b.extra_texts]
    report = lambda f, m: b.report(cfg.name, 0.02, f"{cfg.name}: {m}", log=False)  # noqa: E731
    with b.procs.main_first():
        parts = [teacher_states(teacher_dir, part, b.cached_layers, b.store.root / "cache", report,
                                tokens=b.cached_tokens) for part in parts if part]
    positions = cfg.distill.hidden_positions
    if positions == "tokens":
        states = CachedTokenStates(parts, b.state_layers[cfg.name], found.rows)
    else:
        firsts = [part.first() if b.cached_tokens else part for part in parts]
        states = CachedStates(np.concatenate(firsts) if len(firsts) > 1 else firsts[0], b.cached_layers,
                              b.state_layers[cfg.name])
    if len(states) != len(texts):
        raise LabError(f"{cfg.name}: {len(states):,} cached teacher states for {len(texts):,} training texts")
    what = "every token's states" if positions == "tokens" else "first-token states"
    b.report(cfg.name, 0.04, f"{cfg.name}: token alignment with the teacher: {found.summary()}; learns the "
                             f"teacher's {what} at layers {states.layer_map} ({states.megabytes:,.0f} MB cached, "
                             f"fp16; {time.perf_counter() - t:.1f} s)")
    return states, {"alignment": {"texts": found.texts, "mismatched": found.mismatched},
                    "positions": "every token" if positions == "tokens" else "first token",
                    "layer_map": states.layer_map}


def fp32_source(folder: Path):
    source = load_bundle(folder)
    if techniques.is_quantized(source.meta.get("weights", {})):
        raise LabError(f"{source.name} is already quantized; prune or quantize an fp32 variant")
    return source


def prune(b: BuildState, cfg) -> None:
    from compression.techniques.pruning import make_permanent, sparsity_report
    from compression.training.distill import tokenize, train

    technique = techniques.get(cfg.method, "prune")
    b.report(cfg.name, 0, f"{cfg.name}: {cfg.method} pruning of {cfg.source}")
    source = fp32_source(b.folders[cfg.source])
    model, tokenizer = source.model.train(), source.tokenizer
    if cfg.recover is not None:  # only the recovery epochs train; pruning itself ranks on validation
        training_data(b)
        dataset = tokenize(b.train_data, tokenizer, source.max_length, b.train_logits)
    else:
        dataset = tokenize(b.data, tokenizer, source.max_length, b.logits)
    timings = {}
    t = time.perf_counter()
    batches = importance_batches(dataset, tokenizer, cfg) if technique.needs_batches else []
    model, details = technique.apply(model, cfg, batches)
    timings["prune_seconds"] = round(time.perf_counter() - t, 2)
    if cfg.recover is not None:
        t = time.perf_counter()
        model = train(model, tokenizer, dataset, cfg.recover, b.stage_dirs[cfg.name], b.recipe.seed, cfg.name,
                      distill=cfg.distill, progress=b.trainer_progress(cfg.name))
        timings["train_seconds"] = round(time.perf_counter() - t, 2)
    make_permanent(model)
    if not b.procs.main:
        return
    sparsity = sparsity_report(model, getattr(cfg.options, "targets", PRUNE_TARGETS))
    b.report(cfg.name, 0.86, f"{cfg.name}: sparsity {sparsity['overall']:.1%} of the selected weights; "
                             f"{sparsity['nonzero_params']:,} of {sparsity['params']:,} parameters non-zero")
    save_bundle(model, tokenizer, b.folders[cfg.name], name=cfg.name, kind="pruned", labels=b.data.labels,
                max_length=source.max_length, parent=cfg.source, step={"stage": "prune", **cfg.to_dict()},
                technique=cfg.method, pair=b.data.pair, extra={"pruning": {**details, "sparsity": sparsity},
                                             "data": {"source": b.data.source, "fingerprint": b.data.fingerprint}})
    b.evaluate_and_finish(cfg.name, timings, b.verify(cfg.name, timings))


def importance_batches(dataset, tokenizer, cfg) -> list:
    """Validation batches that rank heads and neurons (never training data: the ranking must not overfit it)."""
    from torch.utils.data import DataLoader

    from compression.training.distill import Collator

    loader = DataLoader(dataset["validation"], batch_size=16, collate_fn=Collator(tokenizer))
    return [batch for _, batch in zip(range(cfg.options.importance_batches), loader)]


def quantize(b: BuildState, cfg) -> None:
    technique = techniques.get(cfg.method, "quantize")
    b.report(cfg.name, 0, f"{cfg.name}: {cfg.method} of {cfg.source}")
    source = fp32_source(b.folders[cfg.source])
    t = time.perf_counter()
    extras = {}
    if technique.needs_validation:  # only methods that declare it get the keyword: the 4-argument form stays
        validation = b.data.splits["validation"]
        extras["validation"] = techniques.Validation(
            tuple(texts_of(validation)), tuple(validation["label"]), source.max_length,
            lambda f, m: b.report(cfg.name, 0.8 * f, f"{cfg.name}: {m}", log=f >= 1))
    built = technique.apply(source.model, source.tokenizer, cfg, b.stage_dirs[cfg.name], **extras)
    timings = {"quantize_seconds": round(time.perf_counter() - t, 2)}
    save_bundle(built.model, source.tokenizer, b.folders[cfg.name], name=cfg.name, kind="quantized",
                labels=b.data.labels, max_length=source.max_length, parent=cfg.source, technique=cfg.method,
                step={"stage": "quantize", **cfg.to_dict()}, onnx_file=built.onnx_file,
                int8_embeddings=built.int8_embeddings, warnings=list(built.warnings), weights_meta=built.weights_meta,
                pair=b.data.pair,
                extra={"data": {"source": b.data.source, "fingerprint": b.data.fingerprint}})
    b.evaluate_and_finish(cfg.name, timings, b.verify(cfg.name, timings))


def bench(b: BuildState) -> None:
    """Benchmark every variant of the run in one interleaved session; skipped when nothing changed."""
    failpoint("bench.start")
    from compression.bundle.runtime import wanted as runtime_wanted
    from compression.evaluation.bench import benchmark, record

    names = list(b.folders)  # teacher first: ratios are against it
    bench_fp = fingerprint("bench", dataclasses.asdict(b.recipe.bench), [b.bundle_fingerprint(n) for n in names],
                           cpu_info()["model"], runtime_wanted(), code_digest("compression.evaluation.bench"))
    records = {r.id: r for r in b.store.variants(status="finished", latest_only=False)}
    done = [records[b.variant_ids[n]].metric_details.get("latency_p50_ms", {}).get("bench_fingerprint")
            for n in names]
    if all(d == bench_fp for d in done):
        b.report("bench", 1, "bench: nothing changed since the last measurement; keeping it")
        return
    texts = texts_of(b.data.splits["test"])
    result = benchmark([b.folders[n] for n in names], texts, b.recipe.bench,
                       progress=lambda f, m: b.report("bench", f, m, log=False))
    record(b.store, [b.variant_ids[n] for n in names], result, {"bench_fingerprint": bench_fp})
    fastest = max(result["results"], key=lambda r: r["speedup_p50"])
    b.report("bench", 1, f"bench: {len(names)} variants in {result['provenance']['wall_seconds']} s; fastest "
                         f"{fastest['name']} at {fastest['latency_p50_ms']:.1f} ms p50 "
                         f"({fastest['speedup_p50']:.1f}x the teacher)")
