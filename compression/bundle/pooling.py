"""How a classifier pools its tokens: BERT reads its first token (``first``, transformers' own head); a student may
instead pool the mean of its real tokens' last states (``mean``), the way all-MiniLM-L6-v2 was trained to read text.

The choice lives in the model's ``config.json`` (``lab_pooling``), so it travels with the weights through every
save, reload, pruning, int8 and ONNX export: :func:`pooled` gives a loaded model the forward its config names, and
the TorchScript trace and the ONNX graph record that forward. Plain ``transformers`` ignores the key and reads the
first token, so a mean-pooled bundle says so in its model card.
"""

from __future__ import annotations

import functools

from compression.core.errors import LabError

POOLINGS = ("first", "mean")
CONFIG_KEY = "lab_pooling"


def pooling_of(model) -> str:
    return getattr(model.config, CONFIG_KEY, None) or "first"


def pooled(model, pooling: str | None = None):
    """``model`` with the forward of ``pooling`` (default: what its config records), which its config then records
    (a model about to be trained may change pooling; a trained one keeps what it learned with).

    Only BERT classifiers (BERT, MiniLM) can mean-pool: their head is the pooler's dense + tanh and a Linear, applied
    here to the mean instead of the first token, so the weights keep their names and shapes."""
    from transformers import BertForSequenceClassification

    pooling = pooling or pooling_of(model)
    if pooling not in POOLINGS:
        raise LabError(f"pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
    bert = type(model) in (BertForSequenceClassification, mean_pooled_class())
    if pooling == "mean" and not bert:
        raise LabError(f"pooling: mean is built for BERT-architecture classifiers (BERT, MiniLM); "
                       f"{type(model).__name__} reads its first token (pooling: first)")
    if pooling == "mean" or CONFIG_KEY in vars(model.config):  # transformers' own models stay untouched
        setattr(model.config, CONFIG_KEY, pooling)
    if bert:  # same modules and weights: only the forward differs
        model.__class__ = mean_pooled_class() if pooling == "mean" else BertForSequenceClassification
    return model


@functools.cache
def mean_pooled_class():
    """``BertForSequenceClassification`` whose head reads the mean of the real tokens' last hidden states (made on
    first use: importing this module stays light)."""
    from torch.nn.functional import cross_entropy
    from transformers import BertForSequenceClassification
    from transformers.modeling_outputs import SequenceClassifierOutput

    class MeanPooledBertForSequenceClassification(BertForSequenceClassification):
        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                    inputs_embeds=None, labels=None, **kwargs):
            kwargs.pop("return_dict", None)
            out = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True, **kwargs)
            last = out.last_hidden_state
            mask = (attention_mask if attention_mask is not None else last.new_ones(last.shape[:2]))
            mask = mask.unsqueeze(-1).to(last.dtype)
            mean = (last * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, H): padding does not count
            pooler = self.bert.pooler
            logits = self.classifier(self.dropout(pooler.activation(pooler.dense(mean))))
            # The lab's tasks are single-label classification (transformers picks its loss by class name).
            loss = None if labels is None else cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
            return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                            attentions=out.attentions)

    return MeanPooledBertForSequenceClassification

