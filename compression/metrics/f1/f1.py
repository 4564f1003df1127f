"""Macro-averaged F1: the unweighted mean of per-class F1, so a rare class counts as much as a common one."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Macro F1 over all classes present in the references or predictions."
_CITATION = ""
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted label ids.
    references (list of int): gold label ids.
    num_classes (int, optional): count classes 0..num_classes-1 even when absent from both lists.
Returns:
    f1 (float): macro F1.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references, num_classes=None):
        pred, ref = np.asarray(predictions), np.asarray(references)
        classes = range(num_classes) if num_classes else sorted(set(pred.tolist()) | set(ref.tolist()))
        scores = []
        for c in classes:
            tp = float(((pred == c) & (ref == c)).sum())
            denominator = float((pred == c).sum() + (ref == c).sum())
            scores.append(2 * tp / denominator if denominator else 0.0)
        return {"f1": float(np.mean(scores)) if scores else 0.0}
