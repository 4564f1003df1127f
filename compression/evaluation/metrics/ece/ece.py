"""Expected calibration error: how far confidence is from accuracy, averaged over equal-width confidence bins."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "ECE with equal-width bins over the top-class probability (Guo et al., 2017)."
_CITATION = ""
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of list of float): class probabilities per example (rows sum to 1).
    references (list of int): gold label ids.
    n_bins (int): number of confidence bins. Default 15.
Returns:
    ece (float): sum over bins of (bin share) * |accuracy in bin - mean confidence in bin|.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ECE(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float32")),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references, n_bins=15):
        probs, ref = np.asarray(predictions, dtype=np.float64), np.asarray(references)
        confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
        correct = (predicted == ref).astype(np.float64)
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        ece = 0.0
        for low, high in zip(edges[:-1], edges[1:]):
            in_bin = (confidence > low) & (confidence <= high)
            if in_bin.any():
                ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
        return {"ece": float(ece)}
