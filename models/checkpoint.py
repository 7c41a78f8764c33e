"""Checkpoint files of bnnflow models: atomic writes (host.atomic), a format tag, and a loader that names a bad file.

Split from train.py so that export and verification (which only load models) need not read the
training loop.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import torch

from host.atomic import atomic_path
from host.refusal import MissingFileError, RefusedInput
from models.topologies import BNN, NUM_CLASSES, build_model

CHECKPOINT_FORMAT = "bnnflow-checkpoint-v1"


class CheckpointError(RefusedInput):
    """A checkpoint.pt that is unreadable, not bnnflow's, or does not fit its model (names the file; exit status 2)."""


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_checkpoint(model: BNN, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write the trained model (name + state dict) atomically; ``load_checkpoint`` rebuilds it.

    A config-declared topology or a class count other than 10 is stored too (``topology``, ``num_classes``),
    so the checkpoint rebuilds without the config.
    """
    payload = {"format": CHECKPOINT_FORMAT, "model_name": model.spec.name, "state_dict": model.state_dict()}
    if model.entry is not None or model.spec.num_classes != NUM_CLASSES:
        payload.update(topology=model.entry, num_classes=model.spec.num_classes)
    payload.update(extra or {})
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: torch.save would embed the random temp name
        torch.save(payload, f)


def load_checkpoint(path: str | Path) -> BNN:
    """Rebuild a model from ``checkpoint.pt`` in eval mode; a clear error names a bad file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: checkpoint not found; train it with `snakemake {path}`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a corrupt zip / pickle
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a bnnflow checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    try:
        model = build_model(payload["model_name"], entry=payload.get("topology"),
                            num_classes=int(payload.get("num_classes", NUM_CLASSES)))
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: names no model bnnflow builds ({err})") from err
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit model {payload['model_name']!r}: {err}") from err
    return model.eval()


def weight_footprint(model: BNN) -> dict[str, Any]:
    """Memory of the quantized weights at their bit width, against float32 latent weights."""
    n_weights = sum(m.weight.numel() for m in model.quant_layers())
    bits = model.spec.weight_bits
    return {
        "quantized_weights": n_weights,
        "weight_bits": bits,
        "weight_bytes_quantized": math.ceil(n_weights * bits / 8),
        "weight_bytes_float32": n_weights * 4,
        "compression_ratio": 32 / bits,
    }
