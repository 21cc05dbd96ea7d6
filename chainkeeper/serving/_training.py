"""The training stage's PyTorch pieces that exporting a model needs; importing this loads torch.

``serving.export`` must stay light (the job table and the API import it), so it imports
this module inside the functions that load a model (a same-package import that delays
torch), never at its top.
"""

from chainkeeper.training import HEAD_FILE, META_FILE, TextClassifier, load_split

__all__ = ["HEAD_FILE", "META_FILE", "TextClassifier", "load_split"]
