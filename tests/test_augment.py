"""Teacher-labelled augmentation: word neighbours, perturbation, the labelled cache, and a build that uses it."""

import json
import random

import numpy as np
import pytest

from compression.bundle.folder import load_bundle
from compression.core.config import AugmentConfig, Recipe
from compression.core.texts import normal_form
from compression.core.typed import from_dict
from compression.data.augment import (
    augment_texts,
    embedding_neighbours,
    new_texts,
    perturb,
    source_texts,
    swapped_pairs,
    vocabulary_words,
)
from compression.training.teacher_targets import teacher_augmented, teacher_transfer

from .conftest import run_cli, run_main, synthetic_rows


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


def test_swapped_pairs_reorder_each_pair_once():
    pairs = [("a cat", "a dog"), ("same", "same"), ("x", "y"), ("y", "x"), ("a cat", "a dog"), ("p", "q")]
    assert swapped_pairs(pairs) == [("a dog", "a cat"), ("q", "p")]  # A == B, or a pair in both orders: nothing new
    assert swapped_pairs(pairs, avoid={("a dog", "a cat")}) == [("q", "p")]  # e.g. a test pair: never in training


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


@pytest.mark.parametrize("settings,field", [({"replace": 0.0}, "replace"), ({"copies": 0}, "copies"),
                                            ({"copies": -1, "transfer": "t.tsv"}, "copies"),
                                            ({"min_words": 0}, "min_words"), ({"max_texts": 0}, "max_texts"),
                                            ({"transfer": " "}, "transfer"), ({"exclude": ["held.tsv"]}, "exclude"),
                                            ({"max_transfer": 10}, "max_transfer"),
                                            ({"transfer": "t.tsv", "max_transfer": 0}, "max_transfer")])
def test_bad_augment_settings_name_the_field(settings, field):
    with pytest.raises(ValueError, match=f"augment.{field}"):
        from_dict(Recipe, {"name": "r", "augment": settings})


def test_augment_key_records_transfer_settings_only_when_set():
    plain = AugmentConfig()
    assert set(plain.key()) == {"copies", "min_words", "max_texts", "replace", "neighbours"}  # as before transfer
    both = AugmentConfig(copies=0, transfer="more.tsv", exclude=["held.tsv"])
    assert both.key()["transfer"] == "more.tsv" and both.key()["exclude"] == ["held.tsv"]
    assert "max_transfer" not in both.key() and AugmentConfig(transfer="t", max_transfer=5).key()["max_transfer"] == 5
    assert "swap" not in plain.key() and AugmentConfig(copies=0, swap=True).key()["swap"] is True


def test_normal_form_ignores_case_spacing_punctuation_and_treebank_brackets():
    assert normal_form("Does n't -LRB- sic -RRB- work .") == normal_form("doesn't (sic) work.") == "doesntsicwork"


def test_new_texts_drops_respelled_and_covered_texts():
    known = ["it does n't work , and the plot -lrb- such as it is -rrb- drags .", "a charming , funny film",
             "the acting is superb"]
    texts = ["It doesn't work, and the plot (such as it is) drags.",    # a known sentence, spelled another way
             "A charming, funny film; the acting is superb.",          # its phrases are all known
             "An overlong mess with one great scene near the end.",    # new
             "An overlong mess with one great scene near the end!",    # the same new text again
             "   ", "Nothing here resembles any review we have seen."]  # empty, new
    assert new_texts(texts, known) == ["An overlong mess with one great scene near the end.",
                                       "Nothing here resembles any review we have seen."]
    assert new_texts(["a charming film indeed, from start to finish"], known) != []  # sharing a few words is fine


def test_teacher_transfer_labels_texts_and_caches_them(tiny_teacher, tmp_path):
    texts = [t for t, _ in synthetic_rows(40, seed=9)]
    logits = teacher_transfer(tiny_teacher, texts, tmp_path)
    assert logits.shape == (40, 2) and np.allclose(logits, load_bundle(tiny_teacher).logits(texts), atol=1e-4)
    cache = list(tmp_path.glob("transfer-*.npz"))
    stamp = cache[0].stat().st_mtime_ns
    assert np.array_equal(teacher_transfer(tiny_teacher, texts, tmp_path), logits)
    assert cache[0].stat().st_mtime_ns == stamp  # read back, not recomputed
    teacher_transfer(tiny_teacher, texts[:20], tmp_path)
    assert len(list(tmp_path.glob("transfer-*.npz"))) == 2  # other texts, another cache


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
    rows = [json.loads(line) for line in run_main("list", "--json", "--store", store).stdout.splitlines()]
    assert {r["name"] for r in rows} == {"teacher", "half"} and all(r["accuracy"] is not None for r in rows)


def test_build_with_a_transfer_set_keeps_only_new_texts(tiny_data, tiny_model, tmp_path):
    """Test texts (even respelled) and excluded texts never reach training; the transfer file's content, not its
    name, decides whether a student is rebuilt."""
    test_texts = [line.split("\t")[0] for line in (tiny_data / "test.tsv").read_text().splitlines()[1:]]
    held = [t for t, _ in synthetic_rows(10, seed=11)]
    new = [t for t, _ in synthetic_rows(30, seed=9)]
    transfer = tmp_path / "more.csv"
    transfer.write_text("review\n" + "\n".join(test_texts[:5] + [test_texts[5].upper() + " !"] + held + new) + "\n")
    (tmp_path / "held.csv").write_text("text\n" + "\n".join(held) + "\n")
    recipe = tmp_path / "transfer.yaml"
    recipe.write_text(
        f"name: transfer\ndata: {{source: {tiny_data}}}\n"
        f"teacher: {{model: {tiny_model}, max_length: 32, train: {{epochs: 3, batch_size: 16, learning_rate: 0.003}}}}\n"
        "students:\n  - {name: half, init: teacher-layers, max_length: 32, train: {epochs: 1, batch_size: 16}}\n"
        f"augment: {{copies: 0, transfer: {transfer}, exclude: [{tmp_path / 'held.csv'}]}}\nbench: null\n")
    store = str(tmp_path / "store")
    first = run_cli("build", str(recipe), "--store", store)
    assert first.returncode == 0, first.stderr[-3000:]
    data_texts = [line.split("\t")[0] for split in ("train", "validation", "test")
                  for line in (tiny_data / f"{split}.tsv").read_text().splitlines()[1:]]
    kept = new_texts(test_texts[:5] + [test_texts[5].upper() + " !"] + held + new, data_texts + held)
    assert set(kept) <= set(new) and len(kept) >= 20  # only the new texts, and nearly all of them
    log = first.stderr + first.stdout
    assert f"{len(kept):,} of {6 + len(held) + len(new):,} texts are new" in log
    assert f"augment: {len(kept):,} teacher-labelled texts join the 200 training texts" in log
    again = run_cli("build", str(recipe), "--store", store)
    assert "half: unchanged" in again.stderr + again.stdout
    transfer.write_text(transfer.read_text() + "\n".join(t for t, _ in synthetic_rows(5, seed=12)) + "\n")
    changed = run_cli("build", str(recipe), "--store", store)
    log = changed.stderr + changed.stdout
    assert changed.returncode == 0 and "half: unchanged" not in log and "teacher: unchanged" in log
    recipe.write_text(recipe.read_text().replace("exclude:", "max_transfer: 5, exclude:"))
    capped = run_cli("build", str(recipe), "--store", store)
    assert capped.returncode == 0 and "augment: 5 teacher-labelled texts join" in capped.stderr + capped.stdout


def test_swap_is_refused_for_single_texts(tiny_data, tiny_model, tmp_path):
    recipe = tmp_path / "swap.yaml"
    recipe.write_text(f"name: swap\ndata: {{source: {tiny_data}}}\nteacher: {{model: {tiny_model}, max_length: 32}}\n"
                      "students:\n  - {name: half, init: teacher-layers, max_length: 32}\n"
                      "augment: {copies: 0, swap: true}\nbench: null\n")
    result = run_cli("build", str(recipe), "--store", str(tmp_path / "store"))
    assert result.returncode == 1 and "augment.swap reorders the two texts of a pair" in result.stderr
    assert "Traceback" not in result.stderr and "loading teacher" not in result.stdout + result.stderr
