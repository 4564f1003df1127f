"""Agreement: the fraction of inputs where a variant predicts the same label as its teacher."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Fraction of predictions equal to the reference model's predictions (not to the gold labels)."
_CITATION = ""
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): the variant's predicted label ids.
    references (list of int): the teacher's predicted label ids on the same inputs.
Returns:
    agreement (float)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Agreement(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}))

    def _compute(self, predictions, references):
        return {"agreement": float((np.asarray(predictions) == np.asarray(references)).mean())}
