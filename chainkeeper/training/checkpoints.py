"""Training checkpoints: everything a killed run needs to carry on where it stopped.

A checkpoint holds the model weights, the optimiser and scheduler states, the random
generators (Python's and PyTorch's), the position in the data (epoch and the next batch
of that epoch), the loss history and the run's config. ``train_classifier`` produces
one every ``config.checkpoint_every_steps`` steps and at each epoch's end; the job
handler writes it into the run's folder under ``settings.home`` and, when a worker dies
and the reaper hands the job to another one, loads it back so the run ends with the same
step count (and, the batch order being seeded, the same metrics up to float noise).

The file is written to a temporary name and renamed over the old one: a worker killed
while writing leaves the previous checkpoint whole, never a half-written one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from chainkeeper.core.errors import InvalidInput

CHECKPOINT_FILE = "checkpoint.pt"
# Keys every checkpoint carries; a file without them was not written by this module.
REQUIRED_KEYS = frozenset({"step", "epoch", "batch_in_epoch", "model", "optimizer", "scheduler", "config"})


def run_folder(home: Path, run_id: int) -> Path:
    """The working folder of one run (checkpoints live here until the run ends).

    Args:
        home: ``settings.home``.
        run_id: the run.
    """
    return Path(home) / "runs" / str(run_id)


def save_checkpoint(folder: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` as the folder's checkpoint, atomically (temp file + rename).

    Args:
        folder: the run folder; created when missing.
        state: the loop's checkpoint dictionary (see ``REQUIRED_KEYS``).

    Returns:
        The checkpoint's path.
    """
    import torch  # loaded here, not at import: the job table imports this module in every process

    assert REQUIRED_KEYS <= set(state), f"checkpoint lacks {sorted(REQUIRED_KEYS - set(state))}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT_FILE
    tmp = folder / f".{CHECKPOINT_FILE}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old or the new file
    return path


def load_checkpoint(folder: Path) -> dict[str, Any] | None:
    """The folder's checkpoint, or None when there is none.

    Args:
        folder: the run folder.

    Raises:
        InvalidInput: the file exists but is not a training checkpoint.
    """
    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        return None
    import torch

    # weights_only=False: the state holds Python RNG state tuples and plain dicts, and
    # the file was written by this process's own code into the run's private folder.
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or not REQUIRED_KEYS <= set(state):
        raise InvalidInput(f"{path} is not a Chainkeeper training checkpoint.",
                           hint="Delete the file to start the run from its first step.")
    return state


def remove_checkpoint(folder: Path) -> None:
    """Delete the folder's checkpoint (after the model is stored, it is dead weight)."""
    (folder / CHECKPOINT_FILE).unlink(missing_ok=True)
