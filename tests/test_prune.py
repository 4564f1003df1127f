import pytest
import torch

from compression.bundle.folder import load_bundle, save_bundle
from compression.bundle.shapes import count_parameters, structure
from compression.bundle.verify import verify_bundle
from compression.core.errors import LabError
from compression.techniques.pruning import (
    magnitude_prune,
    make_permanent,
    selected_weights,
    sparsity_report,
    structured_prune,
)


def _fresh(tiny_teacher):
    return load_bundle(tiny_teacher)


def test_threshold_rule_is_exactly_the_seeds(tiny_teacher):
    bundle = _fresh(tiny_teacher)
    model = bundle.model
    before = {name: m.weight.detach().clone() for name, m in selected_weights(model)}
    untouched = model.classifier.weight.detach().clone()
    magnitude_prune(model, threshold=0.02)
    make_permanent(model)
    for name, module in selected_weights(model):
        old, new = before[name], module.weight.detach()
        assert torch.equal(new[old.abs() < 0.02], torch.zeros_like(new[old.abs() < 0.02]))
        assert torch.equal(new[old.abs() >= 0.02], old[old.abs() >= 0.02])
    assert torch.equal(model.classifier.weight, untouched)  # not selected: not pruned


@pytest.mark.parametrize("target", [0.3, 0.5, 0.9])
def test_global_sparsity_within_one_percent(tiny_teacher, target):
    model = _fresh(tiny_teacher).model
    magnitude_prune(model, sparsity=target)
    make_permanent(model)
    assert abs(sparsity_report(model)["overall"] - target) <= 0.01


def test_masks_stay_in_force_through_training(tiny_teacher):
    model = _fresh(tiny_teacher).model.train()
    magnitude_prune(model, sparsity=0.5)
    zeros = {name: (m.weight == 0).clone() for name, m in selected_weights(model)}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(5):
        out = model(input_ids=torch.randint(5, 30, (4, 8)), labels=torch.tensor([0, 1, 0, 1]))
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    make_permanent(model)
    for name, module in selected_weights(model):
        assert (module.weight[zeros[name]] == 0).all()
    assert not any(hasattr(m, "weight_mask") for m in model.modules())


def test_sparse_bundle_bytes_follow_sparsity(tiny_teacher, tmp_path):
    dense = _fresh(tiny_teacher)
    model = dense.model
    magnitude_prune(model, sparsity=0.9, patterns=[r".*\.weight$"])
    make_permanent(model)
    folder = save_bundle(model, dense.tokenizer, tmp_path / "sparse", name="s", kind="pruned", labels=dense.labels,
                         max_length=32)
    assert load_bundle(folder).meta["weights"]["format"] == "lab"
    weights = (folder / "weights.safetensors").stat().st_size
    assert weights < 0.5 * (tiny_teacher / "model.safetensors").stat().st_size
    assert verify_bundle(folder)["argmax_equal"]


def test_structured_pruning_shrinks_and_reloads(tiny_teacher, tiny_data, tmp_path):
    from compression.core.config import DataConfig
    from compression.data.loading import load_data
    from compression.training.distill import Collator, tokenize

    bundle = _fresh(tiny_teacher)
    model = bundle.model
    data = load_data(DataConfig(source=str(tiny_data)))
    val = tokenize(data, bundle.tokenizer, 32)["validation"]
    batches = [Collator(bundle.tokenizer)([dict(val[i]) for i in range(s, s + 16)]) for s in (0, 16)]
    total_before, _ = count_parameters(model)
    details = structured_prune(model, batches, heads=0.5, ffn=0.5)
    assert sum(len(v) for v in details["heads_removed"].values()) == 4  # half of 2 layers x 4 heads
    shapes = structure(model)
    assert all(s["intermediate"] == 32 for s in shapes)  # 64 neurons -> 32
    assert count_parameters(model)[0] < total_before
    ids = bundle.tokenizer(["a good film"], return_tensors="pt")
    assert model(**ids).logits.shape == (1, 2)
    folder = save_bundle(model, bundle.tokenizer, tmp_path / "slim", name="slim", kind="pruned",
                         labels=bundle.labels, max_length=32)
    assert load_bundle(folder).meta["weights"]["structure"] == shapes
    assert verify_bundle(folder, fresh=True)["argmax_equal"]  # a fresh process rebuilds the shrunken shapes by itself


def test_mpnet_heads_refused_but_ffn_allowed():
    from transformers import MPNetConfig, MPNetForSequenceClassification

    model = MPNetForSequenceClassification(MPNetConfig(vocab_size=40, hidden_size=32, num_hidden_layers=1,
                                                       num_attention_heads=4, intermediate_size=64))
    batch = {"input_ids": torch.randint(3, 40, (2, 6)), "attention_mask": torch.ones(2, 6, dtype=torch.long),
             "labels": torch.tensor([0, 1])}
    with pytest.raises(LabError, match="not supported for MPNet"):
        structured_prune(model, [batch], heads=0.5)
    structured_prune(model, [batch], ffn=0.5)
    assert structure(model) == [{"heads": 4, "intermediate": 32}]


def _tiny_classifier(seed: int = 0):
    """A random 2-layer BERT classifier, 4 heads of 8 and 64 FFN neurons per layer, and two labelled batches."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    model = BertForSequenceClassification(BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=4, intermediate_size=64,
                                                     max_position_embeddings=16, num_labels=2))
    batches = [{"input_ids": torch.randint(5, 40, (8, 10)), "attention_mask": torch.ones(8, 10, dtype=torch.long),
                "labels": torch.randint(0, 2, (8,))} for _ in range(2)]
    return model, batches


# Made irrelevant below: their output weights are zeroed, so nothing downstream depends on them.
DEAD_HEADS = {0: [1], 1: [3]}
DEAD_NEURONS = {0: list(range(0, 64, 4)), 1: list(range(3, 64, 4))}  # 16 of 64 in each layer


def _silence(model) -> None:
    from compression.bundle.shapes import layer_parts

    with torch.no_grad():
        for layer, part in enumerate(layer_parts(model)):
            for h in DEAD_HEADS[layer]:
                part.o.weight[:, h * part.head_size:(h + 1) * part.head_size] = 0
            part.ffn_out.weight[:, DEAD_NEURONS[layer]] = 0


def test_importance_ranks_irrelevant_heads_and_neurons_lowest():
    from compression.techniques.pruning import importance

    model, batches = _tiny_classifier()
    _silence(model)
    heads, neurons = importance(model, batches)
    for layer in (0, 1):
        dead = set(DEAD_HEADS[layer])
        assert all(heads[layer][h] == 0 for h in dead)
        assert all(heads[layer][h] > 0 for h in range(4) if h not in dead)
        lowest = set(neurons[layer].argsort()[:16].tolist())
        assert lowest == set(DEAD_NEURONS[layer])
        assert neurons[layer][DEAD_NEURONS[layer]].abs().max() == 0
        alive = [n for n in range(64) if n not in DEAD_NEURONS[layer]]
        assert (neurons[layer][alive] > 0).all()


def test_structured_prune_removes_exactly_the_irrelevant_parts():
    from compression.bundle.shapes import layer_parts

    model, batches = _tiny_classifier()
    _silence(model)
    before = [(p.q.weight.detach().clone(), p.ffn_in.weight.detach().clone()) for p in layer_parts(model)]
    probe = {"input_ids": torch.randint(5, 40, (3, 7))}
    with torch.no_grad():
        logits = model.eval()(**probe).logits
    details = structured_prune(model, batches, heads=0.25, ffn=0.25)  # 2 of 8 heads; 48 of 64 neurons kept
    assert details == {"heads_removed": {"0": [1], "1": [3]}, "ffn_kept": {"0": 48, "1": 48}}
    assert structure(model) == [{"heads": 3, "intermediate": 48}, {"heads": 3, "intermediate": 48}]
    for layer, (part, (q, ffn_in)) in enumerate(zip(layer_parts(model), before)):
        kept_heads = [h for h in range(4) if h not in DEAD_HEADS[layer]]
        rows = torch.cat([torch.arange(h * 8, (h + 1) * 8) for h in kept_heads])
        assert torch.equal(part.q.weight, q[rows])  # the surviving heads, in order
        alive = [n for n in range(64) if n not in DEAD_NEURONS[layer]]
        assert torch.equal(part.ffn_in.weight, ffn_in[alive])  # the surviving neurons, in order
    with torch.no_grad():  # what was removed contributed nothing, so the predictions stay the same
        assert torch.allclose(model.eval()(**probe).logits, logits, atol=1e-5)
