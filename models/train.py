"""Quantization-aware training of a BNN: deterministic, resumable, logged to CSV / TensorBoard / PNG.

Determinism: the seed fixes the initial weights, the validation split and (seed, epoch) fixes each
epoch's shuffle, so a run that is killed and resumed from its per-epoch state file ends in the
same checkpoint as an uninterrupted one (the state file also keeps the torch RNG for dropout, the
optimizer and the scheduler). On CPU with a fixed thread count, same seed -> same checkpoint bytes.

The model chosen at the end is the one of the epoch with the best validation accuracy; the test set
is touched only once, after training, for the figure in metrics.json.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from host.atomic import atomic_path, write_json_atomic
from models.checkpoint import (
    file_sha256,
    save_checkpoint,
    weight_footprint,
)
from models.curves import plot_curves, write_history_csv
from host.refusal import RefusedInput
from models.datasets import DataError, dataset_class_names, load_npz, model_images
from models.topologies import NUM_CLASSES, build_model, model_spec

STATE_FORMAT = "bnnflow-train-state-v1"


class TrainConfigError(RefusedInput):
    """A training recipe that cannot run (a wrong type, a value out of range, an unknown key); exit status 2."""


@dataclass(frozen=True)
class TrainConfig:
    """The recipe; every field is a key of the ``train:`` section of workflow/config.yaml."""

    epochs: int = 10
    batch_size: int = 100
    optimizer: str = "adam"  # adam | sgd
    lr: float = 0.02
    lr_min: float = 0.0  # final learning rate of the cosine schedule
    schedule: str = "cosine"  # cosine | constant
    warmup_epochs: int = 0
    weight_decay: float = 0.0
    loss: str = "sqr_hinge"  # sqr_hinge (bnn_pynq) | cross_entropy
    dropout: float = 0.0
    val_size: int = 5000  # images carved off the training set for validation
    seed: int = 0
    threads: int = 1  # torch intra-op threads; fixed so that results are reproducible

    def __post_init__(self) -> None:
        for f in fields(self):  # types first: a "fast" lr must not reach a comparison (TypeError)
            value, kind = getattr(self, f.name), {"int": int, "float": (int, float), "str": str}[f.type]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise TrainConfigError(f"training config {f.name}={value!r}: expected {f.type}, got {type(value).__name__}")
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 2,  # batch norm in training mode needs 2 images per batch
            "optimizer": self.optimizer in ("adam", "sgd"),
            "lr": self.lr > 0,
            "lr_min": 0 <= self.lr_min <= self.lr,
            "schedule": self.schedule in ("cosine", "constant"),
            "warmup_epochs": 0 <= self.warmup_epochs < self.epochs,
            "weight_decay": self.weight_decay >= 0,
            "loss": self.loss in ("sqr_hinge", "cross_entropy"),
            "dropout": 0 <= self.dropout < 1,
            "val_size": self.val_size >= 1,
            "threads": self.threads >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise TrainConfigError(f"invalid training config values for {bad}: {self}")

    @classmethod
    def for_model(cls, section: dict[str, Any], model_name: str) -> "TrainConfig":
        """The recipe of one model from the config's ``train:`` section: defaults, then
        ``overrides[<family>]``, then ``overrides[<model name>]``."""
        values = {k: v for k, v in section.items() if k != "overrides"}
        overrides = section.get("overrides") or {}
        values.update(overrides.get(model_name.split("_")[0], {}))
        values.update(overrides.get(model_name, {}))
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TrainConfigError(f"unknown training config keys {unknown}; known: {sorted(known)}")
        return cls(**values)


# --------------------------------------------------------------------------- losses, schedule


def sqr_hinge_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Squared hinge on +1/-1 one-hot targets, as bnn_pynq trains its BNNs."""
    target = torch.full_like(logits, -1.0).scatter_(1, labels[:, None], 1.0)  # (B, 10) in {-1, +1}
    return torch.clamp(1.0 - target * logits, min=0.0).pow(2).mean()


LOSSES = {"sqr_hinge": sqr_hinge_loss, "cross_entropy": F.cross_entropy}


def lr_at(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Learning rate for a global step: linear warm-up, then cosine decay to lr_min (or constant)."""
    warmup = cfg.warmup_epochs * steps_per_epoch
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - warmup) / max(1, total_steps - warmup)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1.0 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------- data


@dataclass
class Splits:
    """Float32 raw-pixel tensors (N, C, H, W) and int64 labels for train / val / test."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each training batch over ``n`` shuffled images.

    A last batch of one image is joined to the one before it (batch norm in training mode needs two
    values per channel), so 55,000 images at batch_size 9 give 6,110 batches, the last of 10 images.
    """
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def make_splits(arrays: dict[str, np.ndarray], input_shape: tuple[int, int, int], val_size: int, seed: int,
                source: str | Path = "the data set") -> Splits:
    """Carve a seeded random validation split off the training set; the test set stays untouched.

    Raises :class:`TrainConfigError` when ``val_size`` leaves fewer than 2 training images, and
    models.datasets.DataError naming ``source`` when its images cannot feed ``input_shape``.
    """
    n_train = len(arrays["x_train"])
    if val_size > n_train - 2:
        raise TrainConfigError(f"val_size {val_size} leaves fewer than 2 training images "
                               f"(the training set of {source} has {n_train})")
    order = np.random.default_rng(seed).permutation(n_train)
    val_idx, train_idx = np.sort(order[:val_size]), np.sort(order[val_size:])

    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(model_images(x, input_shape, source, "x_train/x_test")).float()
        return x, torch.from_numpy(y.astype(np.int64))

    x_tr, y_tr = tensors(arrays["x_train"][train_idx], arrays["y_train"][train_idx])
    x_va, y_va = tensors(arrays["x_train"][val_idx], arrays["y_train"][val_idx])
    x_te, y_te = tensors(arrays["x_test"], arrays["y_test"])
    return Splits(x_tr, y_tr, x_va, y_va, x_te, y_te)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn, batch_size: int = 1000) -> tuple[float, float]:
    """(mean loss, accuracy) of the model in eval mode; restores the training flag afterwards."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        total_loss += float(loss_fn(logits, y[start : start + batch_size])) * len(logits)
        correct += int((logits.argmax(1) == y[start : start + batch_size]).sum())
    model.train(was_training)
    return total_loss / len(x), correct / len(x)


# --------------------------------------------------------------------------- training


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)


def _config_digest(model_name: str, cfg: TrainConfig, data_path: Path, subsets: tuple) -> str:
    blob = json.dumps({"model": model_name, "cfg": asdict(cfg), "data": file_sha256(data_path), "subsets": subsets},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _log_epoch(writer, row: dict[str, float]) -> None:
    """One history row as TensorBoard scalars at step = epoch."""
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
        writer.add_scalar(key.replace("_", "/", 1) if key != "lr" else "lr", row[key], row["epoch"])


def train_model(
    model_name: str,
    dataset_npz: str | Path,
    out_dir: str | Path,
    config: dict[str, Any] | TrainConfig,  # a TrainConfig or the config's train: section (overrides applied)
    train_subset: int | None = None,
    test_subset: int | None = None,
    stop_after_epoch: int | None = None,
    progress: bool = True,
    topology: dict[str, Any] | None = None,
    num_classes: int = NUM_CLASSES,
) -> dict[str, Any] | None:
    """Train ``model_name`` on a prepared data set; write checkpoint, metrics, history, curves, TensorBoard.

    out_dir receives checkpoint.pt, metrics.json, history.csv, curves.png, tensorboard/ and, while
    training, state.pt (the per-epoch resume point, removed at the end). An existing state.pt of the
    same recipe is resumed. ``stop_after_epoch`` ends the call after that epoch as a kill would
    (state.pt written, no final outputs) and returns None; tests use it to prove resume == uninterrupted.
    ``topology``: a config-declared topology entry (models.topology_spec), None for a built-in name;
    ``num_classes``: the data set's class count (labels outside 0..num_classes-1 raise ValueError).
    Returns the metrics dict.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.for_model(dict(config), model_name)
    spec = model_spec(model_name, topology, num_classes)
    data_path, out_dir = Path(dataset_npz), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)

    arrays = load_npz(data_path, train_subset=train_subset, test_subset=test_subset)
    for key in ("y_train", "y_test"):
        if arrays[key].size and int(arrays[key].max()) >= num_classes:
            raise DataError(f"{data_path}: {key} holds label {int(arrays[key].max())}, outside the model's "
                            f"{num_classes} classes 0..{num_classes - 1}")
    splits = make_splits(arrays, spec.topology.input_shape, cfg.val_size, cfg.seed, data_path)
    batches = batch_bounds(len(splits.x_train), cfg.batch_size)
    steps_per_epoch = len(batches)
    total_steps = steps_per_epoch * cfg.epochs
    loss_fn = LOSSES[cfg.loss]

    torch.manual_seed(cfg.seed)
    model = build_model(model_name, dropout=cfg.dropout, entry=topology, num_classes=num_classes)
    optimizer = _make_optimizer(model, cfg)
    digest = _config_digest(model_name if topology is None and num_classes == NUM_CLASSES
                            else json.dumps([model_name, topology, num_classes], sort_keys=True),
                            cfg, data_path, (train_subset, test_subset))
    state_path = out_dir / "state.pt"
    history: list[dict[str, float]] = []
    best = {"val_accuracy": -1.0, "epoch": 0, "state_dict": None}
    start_epoch, train_seconds, cpu_seconds = 0, 0.0, 0.0
    if state_path.is_file():
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=False)  # our own file
        except Exception as err:  # noqa: BLE001 - any unreadable state means: start afresh
            print(f"ignoring unreadable {state_path} ({type(err).__name__}: {err})", flush=True)
            state = {}
        if state.get("format") == STATE_FORMAT and state.get("config_digest") == digest:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            history, best = state["history"], state["best"]
            start_epoch, train_seconds, cpu_seconds = state["epoch"], state["train_seconds"], state["cpu_seconds"]
            print(f"resuming {model_name} from {state_path} after epoch {start_epoch}", flush=True)
        elif state:
            print(f"ignoring {state_path}: it belongs to another recipe or data set", flush=True)

    from torch.utils.tensorboard import SummaryWriter

    # TensorBoard gets the whole history again: Snakemake deletes an incomplete run's tensorboard/ output,
    # so a resumed run rewrites the epochs before the kill from the state file (history.csv's source too).
    shutil.rmtree(out_dir / "tensorboard", ignore_errors=True)
    writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"))
    for row in history:
        _log_epoch(writer, row)
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        order = torch.randperm(len(splits.x_train), generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
        seen, loss_sum, correct = 0, 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"{model_name} epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   mininterval=2.0 if sys.stderr.isatty() else 30.0, leave=False)  # a log file gets few lines
        for i in bar:
            step = epoch * steps_per_epoch + i
            lr = lr_at(cfg, step, total_steps, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = order[batches[i][0] : batches[i][1]]
            x, y = splits.x_train[idx], splits.y_train[idx]
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            model.clip_weights(1.0)  # latent weights stay in [-1, 1], where the STE still passes gradient
            seen += len(y)
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            if i % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{100 * correct / seen:.2f}%", refresh=False)
        bar.close()
        val_loss, val_acc = evaluate(model, splits.x_val, splits.y_val, loss_fn)
        epoch_seconds = time.perf_counter() - t0
        train_seconds += epoch_seconds
        cpu_seconds += time.process_time() - c0  # CPU time: what the run costs on an idle machine
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
               "val_loss": val_loss, "val_accuracy": val_acc, "epoch_seconds": epoch_seconds}
        history.append(row)
        _log_epoch(writer, row)
        if val_acc > best["val_accuracy"]:
            best = {"val_accuracy": val_acc, "epoch": epoch + 1,
                    "state_dict": {k: v.clone() for k, v in model.state_dict().items()}}
        print(f"{model_name} epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4f} "
              f"train {100 * row['train_accuracy']:.2f}% val {100 * val_acc:.2f}% ({epoch_seconds:.1f} s)", flush=True)
        with atomic_path(state_path) as tmp, open(tmp, "wb") as f:  # a file object: see save_checkpoint
            torch.save({"format": STATE_FORMAT, "config_digest": digest, "epoch": epoch + 1,
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "torch_rng": torch.get_rng_state(), "history": history, "best": best,
                        "train_seconds": train_seconds, "cpu_seconds": cpu_seconds}, f)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < cfg.epochs:
            writer.close()
            return None
    writer.close()

    model.load_state_dict(best["state_dict"])
    model.eval()
    test_loss, test_acc = evaluate(model, splits.x_test, splits.y_test, loss_fn)
    checkpoint = out_dir / "checkpoint.pt"
    save_checkpoint(model, checkpoint)
    write_history_csv(history, out_dir / "history.csv")
    plot_curves(history, out_dir / "curves.png", f"{model_name}: best val {100 * best['val_accuracy']:.2f}% "
                f"(epoch {best['epoch']}), test {100 * test_acc:.2f}%")
    metrics = {
        "model": model_name,
        "dataset": data_path.stem,
        "num_classes": num_classes,
        **({"class_names": class_names} if (class_names := dataset_class_names(data_path)) else {}),
        **({"topology": topology} if topology is not None else {}),
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "val_accuracy": best["val_accuracy"],
        "best_epoch": best["epoch"],
        "epochs": cfg.epochs,
        "train_seconds": round(train_seconds, 3),
        "train_cpu_seconds": round(cpu_seconds, 3),
        "seed": cfg.seed,
        "n_train": len(splits.x_train),
        "n_val": len(splits.x_val),
        "n_test": len(splits.x_test),
        "recipe": asdict(cfg),
        "footprint": weight_footprint(model),
        "checkpoint_sha256": file_sha256(checkpoint),
        "torch_version": torch.__version__,
    }
    write_json_atomic(out_dir / "metrics.json", metrics)
    state_path.unlink(missing_ok=True)
    print(f"{model_name}: test accuracy {100 * test_acc:.2f}% after {cfg.epochs} epochs, {train_seconds:.0f} s", flush=True)
    return metrics
