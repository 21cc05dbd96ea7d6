"""The training stage's PyTorch pieces the retraining loop needs; importing this loads torch.

``chain.maintenance`` is imported by the CLI and the API, so it imports this module
inside the function that scores models (a same-package import that delays torch).
"""

from chainkeeper.training import TextClassifier, predict_labels

__all__ = ["TextClassifier", "predict_labels"]
