"""The three networks by name, and loading the right one from a weights file."""
from __future__ import annotations

from pathlib import Path

from cornernet_saccade.errors import CheckpointError
from cornernet_saccade.model.base import CornerNetBase
from cornernet_saccade.model.checkpoint import model_from_stored, read_checkpoint, resolve_weights_path, stored_architecture
from cornernet_saccade.model.cornernet import CornerNet
from cornernet_saccade.model.cornernet_saccade import CornerNetSaccade
from cornernet_saccade.model.cornernet_squeeze import CornerNetSqueeze

#: The network class of each ``architecture`` name (stored in the ``model_config`` of weights files).
MODEL_CLASSES: dict[str, type[CornerNetBase]] = {
    cls.architecture: cls for cls in (CornerNetSaccade, CornerNetSqueeze, CornerNet)
}


def load_model(weights: str | Path) -> CornerNetBase:
    """The network of a weights file, run folder or bundled name, of the class the file is for
    (:func:`~cornernet_saccade.model.checkpoint.stored_architecture`: stored, or read from the
    tensor names of an official ``.pkl``), in eval mode with the file's class names and test settings."""
    path = resolve_weights_path(weights)
    stored = read_checkpoint(path)  # read once: it names the network and holds its weights
    architecture = stored_architecture(stored)
    if architecture not in MODEL_CLASSES:
        raise CheckpointError(f"{path}: unknown network {architecture!r} (known: {', '.join(MODEL_CLASSES)})")
    return model_from_stored(MODEL_CLASSES[architecture], stored)
