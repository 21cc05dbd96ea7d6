"""The training stage's PyTorch pieces that exporting and serving a model need; importing this loads torch.

``serving.export`` must stay light (the job table and the API import it), so it imports
this module inside the functions that load a model (a same-package import that delays
torch), never at its top.
"""

from chainkeeper.training import (
    HEAD_FILE,
    META_FILE,
    TextClassifier,
    TokenTagger,
    entity_metrics,
    load_split,
    word_case,
)

__all__ = ["HEAD_FILE", "META_FILE", "TextClassifier", "TokenTagger", "entity_metrics", "load_split", "word_case"]
