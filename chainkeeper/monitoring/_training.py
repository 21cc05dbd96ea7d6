"""The training stage's PyTorch pieces monitoring needs; importing this loads torch.

Monitoring modules stay light (the job table and the shells import them), so they import
this module inside the function that loads a model or reads its label map (a
same-package import that delays torch), never at their top.
"""

from chainkeeper.training import META_FILE, TextClassifier

__all__ = ["META_FILE", "TextClassifier"]
