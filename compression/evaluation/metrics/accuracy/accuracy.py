"""Accuracy with a percentile-bootstrap 95 % confidence interval (an `evaluate` metric module, loaded by path)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Fraction of predictions equal to the references, with a seeded bootstrap 95 % CI."
_CITATION = ""
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted label ids.
    references (list of int): gold label ids.
    n_bootstrap (int): resamples for the confidence interval (0 disables it). Default 1000.
    seed (int): bootstrap seed. Default 0.
Returns:
    accuracy (float), accuracy_ci_low (float), accuracy_ci_high (float)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references, n_bootstrap=1000, seed=0):
        correct = np.asarray(predictions) == np.asarray(references)
        result = {"accuracy": float(correct.mean())}
        if n_bootstrap > 0 and len(correct) > 1:
            rng = np.random.default_rng(seed)
            means = correct[rng.integers(0, len(correct), size=(n_bootstrap, len(correct)))].mean(axis=1)
            result["accuracy_ci_low"], result["accuracy_ci_high"] = (float(q) for q in np.percentile(means, [2.5, 97.5]))
        return result
