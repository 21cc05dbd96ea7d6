"""The serving runtime monitoring needs to run a tagger; importing this loads torch.

Monitoring modules stay light (the job table and the shells import them), so they import
this module inside the function that loads a model (a same-package import that delays
torch), never at their top.
"""

from chainkeeper.serving import load_predictor

__all__ = ["load_predictor"]
