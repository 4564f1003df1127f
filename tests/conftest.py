"""Shared fixtures: tiny BERT models built in code (no network) and small synthetic data sets on disk."""

from __future__ import annotations

import os
import random
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Builds reload each variant from disk in this process, not a fresh interpreter (the files and the probe check are
# the same; the start-up is not): tests of the fresh-process check itself ask for it (FRESH_VERIFY).
os.environ.setdefault("COMPRESSION_LAB_VERIFY", "in-process")
FRESH_VERIFY = {"COMPRESSION_LAB_VERIFY": "fresh-process"}

POSITIVE = "good great superb moving brilliant charming fresh delightful".split()
NEGATIVE = "bad awful dull boring tedious clumsy stale dreadful".split()
FILLER = "the film movie plot was is a an and with story acting cast script ending quite very".split()


def synthetic_rows(n: int, seed: int = 0) -> list[tuple[str, int]]:
    """A sentiment task a tiny model can learn: a sentence is positive iff it holds more positive words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        main, other = (POSITIVE, NEGATIVE) if label else (NEGATIVE, POSITIVE)
        words = rng.sample(FILLER, 4) + rng.sample(main, 2) + rng.sample(other, rng.randint(0, 1))
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def synthetic_pairs(n: int, seed: int = 0) -> list[tuple[str, str, int]]:
    """A pair task that needs both texts: each holds 1 or 2 sentiment words of one polarity, and the pair is
    positive (1) iff the positive words of both together outnumber the negative ones (ties are not drawn)."""
    rng = random.Random(seed)
    rows = []
    while len(rows) < n:
        counts = [rng.choice((1, 2)) * rng.choice((1, -1)) for _ in range(2)]
        if sum(counts) == 0:
            continue
        texts = []
        for count in counts:
            words = rng.sample(FILLER, 3) + rng.sample(POSITIVE if count > 0 else NEGATIVE, abs(count))
            rng.shuffle(words)
            texts.append(" ".join(words))
        rows.append((texts[0], texts[1], int(sum(counts) > 0)))
    return rows


def write_vocab(folder: Path, extra: list[str] = (), drop: list[str] = ()) -> Path:
    words = sorted(set(POSITIVE + NEGATIVE + FILLER + list(extra)) - set(drop))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    path = folder / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n")
    return path


def make_tiny_backbone(folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0, extra_vocab=(),
                       heads: int = 2, drop_vocab=()) -> Path:
    """Save a tiny BertModel + WordPiece tokenizer as a plain local model folder (like the embedded backbones)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = write_vocab(folder, list(extra_vocab), list(drop_vocab))
    # transformers 5: BertTokenizerFast(vocab_file=...) silently ignores the file; `vocab=` is the argument now.
    tokenizer = BertTokenizer(vocab=str(vocab), do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=hidden * 2, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_backbone(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A folder with train/validation/test TSV files of the synthetic task (string-free int labels)."""
    folder = tmp_path_factory.mktemp("data") / "synthetic"
    folder.mkdir()
    for split, n, seed in (("train", 200, 1), ("validation", 60, 2), ("test", 80, 3)):
        lines = ["sentence\tlabel"] + [f"{t}\t{y}" for t, y in synthetic_rows(n, seed)]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="session")
def tiny_pair_data(tmp_path_factory) -> Path:
    """A folder with train/validation/test TSV files of the synthetic pair task (columns sentence1, sentence2)."""
    folder = tmp_path_factory.mktemp("data") / "pairs"
    folder.mkdir()
    for split, n, seed in (("train", 240, 11), ("validation", 60, 12), ("test", 80, 13)):
        lines = ["sentence1\tsentence2\tlabel"] + [f"{a}\t{b}\t{y}" for a, b, y in synthetic_pairs(n, seed)]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="session")
def pair_store(tiny_model, tiny_pair_data, tmp_path_factory) -> Path:
    """A store built from a pair-task recipe on a tiny model: teacher, a distilled student and an int8 variant."""
    folder = tmp_path_factory.mktemp("pair-store")
    recipe = folder / "pairs.yaml"
    recipe.write_text(f"name: pairs\ndata: {{source: {tiny_pair_data}}}\n"
                      f"teacher: {{model: {tiny_model}, max_length: 32, train: {{epochs: 8, batch_size: 16, "
                      f"learning_rate: 3.0e-3, warmup_ratio: 0.0}}}}\n"
                      f"students:\n  - {{name: student, init: teacher-layers, layers: [0], max_length: 32, "
                      f"train: {{epochs: 1, batch_size: 16}}}}\n"
                      "quantize:\n  - {name: teacher-int8, source: teacher, method: dynamic-int8}\n"
                      "bench: {samples: 4, repeats: 1, warmup: 1, throughput_batches: 1, memory: false}\n")
    result = run_cli("build", str(recipe), "--store", str(folder / "store"))
    assert result.returncode == 0, result.stderr[-2000:]
    return folder / "store"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def run_cli(*args: str, env: dict | None = None, timeout: float = 600):
    """Run ``python -m compression ARGS`` in a fresh process, as a user would."""
    import subprocess

    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "compression", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=ROOT)


def run_main(*args: str, env: dict | None = None):
    """``python -m compression ARGS`` in this process: ``main(argv)`` with its output captured, for tests where the
    process boundary is not what they check. Same exit status and output as :func:`run_cli`, without an
    interpreter's start-up (seconds each). ``env`` is set for the call only."""
    import contextlib
    import io
    import subprocess

    from compression.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit:  # argparse: --help (0) and usage errors (2)
                code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return subprocess.CompletedProcess(["compression", *args], code, out.getvalue(), err.getvalue())


def embedded_installed(package: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(package)
        return True
    except metadata.PackageNotFoundError:
        return False


@pytest.fixture(scope="session")
def tiny_teacher(tiny_data, tmp_path_factory) -> Path:
    """A tiny 4-head BERT fine-tuned on the synthetic task (confident logits), saved as an fp32 bundle."""
    from compression.bundle.folder import save_bundle
    from compression.core.config import DataConfig, TrainConfig
    from compression.data.loading import load_data
    from compression.data.sources import load_tokenizer_and_model
    from compression.training.distill import tokenize, train

    folder = tmp_path_factory.mktemp("tiny-teacher")
    backbone = make_tiny_backbone(folder / "backbone", hidden=32, layers=2, heads=4)
    data = load_data(DataConfig(source=str(tiny_data)))
    tokenizer, model = load_tokenizer_and_model(str(backbone), data.labels)
    model = train(model, tokenizer, tokenize(data, tokenizer, 32),
                  TrainConfig(epochs=8, batch_size=16, learning_rate=3e-3, warmup_ratio=0.0), folder / "work",
                  seed=0, name="teacher")
    return save_bundle(model, tokenizer, folder / "teacher", name="teacher", kind="teacher", labels=data.labels,
                       max_length=32)


@pytest.fixture()
def artifacts(tmp_path) -> Path:
    """Where a test saves screenshots for a person to look at: ``$LAB_TEST_ARTIFACTS`` when set, else a temp
    folder (never the repository)."""
    folder = Path(os.environ.get("LAB_TEST_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# True once every plotly chart on the page has drawn (plotly sets _fullLayout when a plot is done).
CHARTS_DRAWN_JS = ("() => { const c = [...document.querySelectorAll('.js-plotly-plot')]; return c.length > 0 && "
                   "c.every(p => p._fullLayout && p.querySelector('.main-svg .xtick, .main-svg .bartext, "
                   ".main-svg .textpoint')); }")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_store(tiny_model, tiny_data, tmp_path_factory) -> Path:
    """A template store built once by the CLI: a tiny teacher and its dynamic-int8 copy, benchmarked. Read it as
    it is; copy it (:func:`store_copy`) to change or serve it."""
    folder = tmp_path_factory.mktemp("template")
    recipe = folder / "tiny.yaml"
    recipe.write_text(f"name: tiny\ndata: {{source: {tiny_data}}}\n"
                      f"teacher: {{model: {tiny_model}, max_length: 32, train: {{epochs: 2, batch_size: 16}}}}\n"
                      "quantize:\n  - {name: teacher-int8, source: teacher, method: dynamic-int8}\n"
                      "bench: {samples: 4, repeats: 1, warmup: 1, throughput_batches: 1, batch_size: 4, "
                      "memory: false}\n")
    result = run_cli("build", str(recipe), "--store", str(folder / "store"))
    assert result.returncode == 0, result.stderr[-2000:]
    return folder / "store"


def store_copy(store: Path, folder: Path) -> Path:
    """A copy of a template store in ``folder`` (bundles, database and caches), for a test that changes it."""
    import shutil

    target = folder / "store"
    shutil.copytree(store, target)
    return target


@pytest.fixture(scope="session")
def served_app(tiny_store, tmp_path_factory):
    """The real app over a copy of the template store (a teacher and an int8 variant), served on localhost."""
    folder = tmp_path_factory.mktemp("app")
    store_copy(tiny_store, folder)
    from compression.dashboard import create_app, launch_kwargs

    demo = create_app(str(folder / "store"))
    port = _free_port()
    kwargs = {**launch_kwargs(), "server_name": "127.0.0.1", "server_port": port, "prevent_thread_lock": True}
    demo.launch(**kwargs)
    yield f"http://127.0.0.1:{port}/", folder
    demo.close()
