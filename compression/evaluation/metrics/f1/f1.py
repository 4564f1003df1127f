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
    positive (int, optional): also report the F1 of this class (binary tasks such as MRPC report it), with a
        seeded percentile-bootstrap 95 % CI.
    n_bootstrap (int): resamples for that CI (0 disables it). Default 1000.
    seed (int): bootstrap seed. Default 0.
Returns:
    f1 (float): macro F1; with ``positive``: f1_positive, f1_positive_ci_low, f1_positive_ci_high.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references, num_classes=None, positive=None, n_bootstrap=1000, seed=0):
        pred, ref = np.asarray(predictions), np.asarray(references)
        classes = range(num_classes) if num_classes else sorted(set(pred.tolist()) | set(ref.tolist()))
        scores = [float(_f1(pred == c, ref == c)) for c in classes]
        result = {"f1": float(np.mean(scores)) if scores else 0.0}
        if positive is not None:
            said, true = pred == positive, ref == positive
            result["f1_positive"] = float(_f1(said, true))
            if n_bootstrap > 0 and len(pred) > 1:
                rows = np.random.default_rng(seed).integers(0, len(pred), size=(n_bootstrap, len(pred)))
                low, high = np.percentile(_f1(said[rows], true[rows]), [2.5, 97.5])
                result["f1_positive_ci_low"], result["f1_positive_ci_high"] = float(low), float(high)
        return result


def _f1(said, true):
    """F1 of one class from boolean arrays (predicted as it, is it), over the last axis; 0 when neither occurs."""
    tp = (said & true).sum(axis=-1)
    denominator = said.sum(axis=-1) + true.sum(axis=-1)
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
