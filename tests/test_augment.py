"""Teacher-labelled augmentation: word neighbours, perturbation, the labelled cache, and a build that uses it."""

import json
import random

import numpy as np
import pytest

from compression.augment import (augment_texts, embedding_neighbours, perturb, source_texts, teacher_augmented,
                                 vocabulary_words)
from compression.bundle import load_bundle
from compression.config import AugmentConfig, from_dict, Recipe

from .conftest import run_cli


def test_vocabulary_words_are_whole_words_only(tiny_teacher):
    tokenizer = load_bundle(tiny_teacher).tokenizer
    found = vocabulary_words(tokenizer)
    assert "good" in found and "boring" in found and found["good"] == tokenizer.get_vocab()["good"]
    assert set(found) <= {t for t in tokenizer.get_vocab() if t.isalpha()} and "CLS" not in found


def test_vocabulary_words_of_a_byte_level_bpe_are_word_starts():
    """In BPE and SentencePiece vocabularies a marker starts a word; an unmarked token continues one."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["a good film with a great plot and goodness"] * 20, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "</s>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>")
    tokens = {index: token for token, index in tokenizer.get_vocab().items()}
    found = vocabulary_words(tokenizer)
    assert {"good", "great", "plot"} <= set(found)
    assert all(tokens[index] == "Ġ" + word for word, index in found.items())  # never a continuation piece
    assert any(t.isalpha() and len(t) >= 2 and "Ġ" + t not in tokens.values() for t in tokens.values())


def test_embedding_neighbours_rank_by_cosine():
    words = {"good": 0, "great": 1, "bad": 2, "awful": 3, "plot": 4}
    emb = np.array([[1, 0, 0], [0.9, 0.1, 0], [-1, 0, 0.1], [-0.9, 0, 0.2], [0, 1, 0]], dtype=np.float32)
    found = embedding_neighbours(emb, words, {"good", "awful", "absent"}, k=2)
    assert found == {"good": ["great", "plot"], "awful": ["bad", "plot"]}  # never itself; unknown words skipped
    assert embedding_neighbours(emb, words, {"good"}, k=50)["good"][-1] == "bad"  # k capped at the other words
    assert embedding_neighbours(emb[:1], {"good": 0}, {"good"}, k=3) == {}  # a one-word vocabulary has none


def test_perturb_replaces_only_words_with_neighbours():
    neighbours = {"good": ["great"], "film": ["movie"]}
    rng = random.Random(0)
    assert perturb("a good film , truly", neighbours, 1.0, rng) == "a great movie , truly"
    kept = [perturb("good " * 200, neighbours, 0.3, rng).split().count("great") for _ in range(5)]
    assert all(30 < k < 90 for k in kept)  # about 30 % of 200 words, never all or none


def test_augment_texts_is_seeded_and_drops_duplicates():
    neighbours = {"good": ["great", "fine"], "bad": ["awful", "poor"]}
    texts = ["a good plot", "a bad plot", "no words to swap"]
    first = augment_texts(texts, neighbours, copies=3, replace=1.0, seed=1)
    assert first == augment_texts(texts, neighbours, copies=3, replace=1.0, seed=1)
    assert len(first) == len(set(first)) <= 4  # only 2 variants each exist; the third text cannot change
    assert not set(first) & set(texts)
    avoided = augment_texts(texts, neighbours, copies=3, replace=1.0, seed=1, avoid={"a great plot"})
    assert "a great plot" in first and "a great plot" not in avoided  # e.g. a test text: never in training


def test_source_texts_picks_long_texts_and_a_seeded_subset():
    texts = [f"word {i} " * (i % 6) for i in range(100)]
    chosen = source_texts(texts, min_words=8, max_texts=None, seed=0)
    assert chosen and all(len(t.split()) >= 8 for t in chosen)
    subset = source_texts(texts, min_words=8, max_texts=5, seed=0)
    assert len(subset) == 5 and set(subset) <= set(chosen) and subset == source_texts(texts, 8, 5, 0)


def test_teacher_augmented_labels_new_texts_and_caches_them(tiny_teacher, tiny_data, tmp_path):
    train = [line.split("\t")[0] for line in (tiny_data / "train.tsv").read_text().splitlines()[1:]]
    cfg = AugmentConfig(copies=2, min_words=6, replace=0.4, neighbours=3)
    texts, logits = teacher_augmented(tiny_teacher, train, cfg, seed=0, cache_dir=tmp_path)
    assert len(texts) > len(train) // 2 and logits.shape == (len(texts), 2) and not set(texts) & set(train)
    teacher = load_bundle(tiny_teacher)
    assert np.allclose(logits[:16], teacher.logits(texts[:16]), atol=1e-4)  # the teacher's own logits
    cache = list(tmp_path.glob("augmented-*.npz"))
    stamp = cache[0].stat().st_mtime_ns
    again, logits_again = teacher_augmented(tiny_teacher, train, cfg, seed=0, cache_dir=tmp_path)
    assert again == texts and np.array_equal(logits, logits_again) and cache[0].stat().st_mtime_ns == stamp
    other, _ = teacher_augmented(tiny_teacher, train, AugmentConfig(copies=1, min_words=6), seed=0,
                                 cache_dir=tmp_path)
    assert other != texts and len(list(tmp_path.glob("augmented-*.npz"))) == 2  # another config, another cache


@pytest.mark.parametrize("field,value", [("replace", 0.0), ("copies", 0), ("min_words", 0), ("max_texts", 0)])
def test_bad_augment_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"augment.{field}"):
        from_dict(Recipe, {"name": "r", "augment": {field: value}})


def test_build_with_augmentation_trains_students_on_more_text(tiny_data, tiny_model, tmp_path):
    base = (f"name: aug\ndata: {{source: {tiny_data}}}\n"
            f"teacher: {{model: {tiny_model}, max_length: 32, train: {{epochs: 3, batch_size: 16, learning_rate: 0.003}}}}\n"
            "students:\n  - {name: half, init: teacher-layers, max_length: 32, train: {epochs: 2, batch_size: 16}}\n"
            "bench: null\n")
    store = str(tmp_path / "store")
    (tmp_path / "plain.yaml").write_text(base)
    (tmp_path / "aug.yaml").write_text(base + "augment: {copies: 1, min_words: 6, neighbours: 3}\n")
    assert run_cli("build", str(tmp_path / "plain.yaml"), "--store", store).returncode == 0
    result = run_cli("build", str(tmp_path / "aug.yaml"), "--store", store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "teacher-labelled texts join the 200 training texts" in result.stderr + result.stdout
    assert "teacher: unchanged" in result.stderr + result.stdout  # augmentation leaves the teacher alone
    assert "half: unchanged" not in result.stderr + result.stdout  # ... and retrains the student
    again = run_cli("build", str(tmp_path / "aug.yaml"), "--store", store)
    assert "half: unchanged" in again.stderr + again.stdout
    assert "augment:" not in again.stderr + again.stdout  # nothing trains, so nothing is augmented
    rows = [json.loads(line) for line in run_cli("list", "--json", "--store", store).stdout.splitlines()]
    assert {r["name"] for r in rows} == {"teacher", "half"} and all(r["accuracy"] is not None for r in rows)
