"""Training of bnnflow's Larq models with the same recipe keys and outputs as the torch world (models/train.py).

The recipe is the config's ``train:`` section (defaults, then ``overrides[<family>]``, then
``overrides[<model name>]``): Adam or SGD, peak lr with linear warm-up and cosine decay to lr_min per step,
cross-entropy or squared hinge, a seeded validation split carved off the training set, the epoch with the
best validation accuracy kept, the test set scored once at the end. Latent weights are clipped to [-1, 1]
by Larq's ``weight_clip`` constraint (as the Brevitas recipe clips them). Dropout is not offered for Larq
models (refused, not ignored). TensorFlow runs with ``threads`` intra-op threads and op determinism.

Outputs in ``out_dir``: ``model.h5`` (latent weights; Larq quantizes in the forward pass), ``metrics.json``,
``history.csv`` (the torch world's columns), ``curves.png``, ``tensorboard/``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import time
import warnings
from pathlib import Path
from typing import Any

import larq as lq
import numpy as np
import tensorflow as tf

from larq_models.atomic import atomic_path, write_json_atomic
from larq_models.data import load_npz, to_nhwc
from larq_models.topologies import build_larq_model, parse_name

RECIPE_KEYS = ("epochs", "batch_size", "optimizer", "lr", "lr_min", "schedule", "warmup_epochs", "weight_decay",
               "loss", "dropout", "val_size", "seed", "threads")
HISTORY_COLUMNS = ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_seconds")


def recipe_for(section: dict[str, Any], model_name: str) -> dict[str, Any]:
    """The recipe of one model from the ``train:`` section; ValueError for unknown keys or unsupported values."""
    values = {k: v for k, v in section.items() if k != "overrides"}
    overrides = section.get("overrides") or {}
    values.update(overrides.get(model_name.split("_")[0], {}))
    values.update(overrides.get(model_name, {}))
    unknown = sorted(set(values) - set(RECIPE_KEYS))
    missing = sorted(set(RECIPE_KEYS) - set(values))
    if unknown or missing:
        raise ValueError(f"training recipe for {model_name}: unknown keys {unknown}, missing keys {missing}")
    if values["dropout"]:
        raise ValueError(f"training recipe for {model_name}: dropout {values['dropout']} is not offered for Larq "
                         "models (set it to 0 for them in train.overrides)")
    if values["optimizer"] not in ("adam", "sgd") or values["loss"] not in ("cross_entropy", "sqr_hinge") \
            or values["schedule"] not in ("cosine", "constant"):
        raise ValueError(f"training recipe for {model_name}: bad optimizer / loss / schedule in {values}")
    return values


class WarmupCosine(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Per-step lr: linear warm-up to ``lr`` over ``warmup`` steps, then cosine to ``lr_min`` (or constant)."""

    def __init__(self, lr: float, lr_min: float, warmup: int, total: int, cosine: bool) -> None:
        self.lr, self.lr_min, self.warmup, self.total, self.cosine = lr, lr_min, warmup, total, cosine

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.lr * (step + 1.0) / max(1, self.warmup)
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        decay = self.lr_min + 0.5 * (self.lr - self.lr_min) * (1.0 + tf.cos(math.pi * tf.minimum(progress, 1.0)))
        after = decay if self.cosine else tf.constant(self.lr, tf.float32)
        return tf.where(step < self.warmup, warm, after)

    def get_config(self) -> dict:
        return {"lr": self.lr, "lr_min": self.lr_min, "warmup": self.warmup, "total": self.total, "cosine": self.cosine}


def sqr_hinge(y_true, logits):
    """Squared hinge on +1/-1 one-hot targets (bnn_pynq's loss), for integer labels."""
    target = 2.0 * tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), tf.shape(logits)[-1]) - 1.0
    return tf.reduce_mean(tf.square(tf.maximum(0.0, 1.0 - target * logits)), axis=-1)


class _BestAndProgress(tf.keras.callbacks.Callback):
    """Keeps the weights of the best validation epoch, times epochs, prints one line per epoch."""

    def __init__(self, name: str, epochs: int, schedule: WarmupCosine) -> None:
        super().__init__()
        self.name, self.epochs, self.schedule = name, epochs, schedule
        self.best = {"val_accuracy": -1.0, "epoch": 0, "weights": None}
        self.rows: list[dict[str, float]] = []
        self._t0 = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        lr = float(self.schedule(self.model.optimizer.iterations - 1))  # the last step's
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": float(logs["loss"]),
               "train_accuracy": float(logs["accuracy"]), "val_loss": float(logs["val_loss"]),
               "val_accuracy": float(logs["val_accuracy"]), "epoch_seconds": time.perf_counter() - self._t0}
        self.rows.append(row)
        if row["val_accuracy"] > self.best["val_accuracy"]:
            self.best = {"val_accuracy": row["val_accuracy"], "epoch": epoch + 1, "weights": self.model.get_weights()}
        print(f"{self.name} epoch {epoch + 1}/{self.epochs}: loss {row['train_loss']:.4f} train "
              f"{100 * row['train_accuracy']:.2f}% val {100 * row['val_accuracy']:.2f}% ({row['epoch_seconds']:.1f} s)",
              flush=True)


def write_history_csv(rows: list[dict[str, float]], path: Path) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def plot_curves(rows: list[dict[str, float]], path: Path, title: str) -> None:
    """Loss and accuracy against epoch, train and validation, as one PNG (as models/curves.py)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train", "train"), ("val", "validation")):
        ax_loss.plot(epochs, [r[f"{key}_loss"] for r in rows], label=label)
        ax_acc.plot(epochs, [100 * r[f"{key}_accuracy"] for r in rows], label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)


def weight_footprint(model: tf.keras.Model) -> dict[str, Any]:
    """Memory of the binary weights (1 bit each) against float32 latent weights."""
    n = sum(int(np.prod(layer.kernel.shape)) for layer in model.layers
            if isinstance(layer, (lq.layers.QuantDense, lq.layers.QuantConv2D)))
    return {"quantized_weights": n, "weight_bits": 1, "weight_bytes_quantized": math.ceil(n / 8),
            "weight_bytes_float32": 4 * n, "compression_ratio": 32.0}


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_model(model: tf.keras.Model, path: Path) -> None:
    """The model with its latent weights as one HDF5 file, atomically."""
    with atomic_path(path, suffix=".h5") as tmp, lq.context.quantized_scope(False):
        model.save(tmp, save_format="h5", include_optimizer=False)


def _set_threads(threads: int) -> None:
    """TensorFlow's intra-op pool to ``threads``, inter-op to 1 (one training per core, as the Brevitas world).

    TensorFlow fixes both when its context starts; a process that already ran TensorFlow (a test session that
    ran another Larq test first) keeps its pools, and this warns with the counts in force instead of failing.
    The command line and the Snakemake rule start a fresh process, where the recipe's count always applies.
    """
    if (tf.config.threading.get_intra_op_parallelism_threads() == threads
            and tf.config.threading.get_inter_op_parallelism_threads() == 1):
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        warnings.warn(f"TensorFlow already started in this process: training keeps its thread pools "
                      f"(intra-op {tf.config.threading.get_intra_op_parallelism_threads()}, inter-op "
                      f"{tf.config.threading.get_inter_op_parallelism_threads()}; 0 = TensorFlow's default), "
                      f"not the recipe's threads={threads}", RuntimeWarning, stacklevel=3)


def train_larq(model_name: str, dataset_npz: str | Path, out_dir: str | Path, section: dict[str, Any],
               train_subset: int | None = None, test_subset: int | None = None, progress: bool = False) -> dict:
    """Train ``model_name`` (``<family>_w1a1_larq``); write model.h5, metrics, history, curves, TensorBoard.

    ``section``: the config's ``train:`` section (with ``overrides``). Returns the metrics dict.
    Raises ValueError for a bad name or recipe, larq_models.data.DataError for a bad data set.
    """
    topo = parse_name(model_name)
    cfg = recipe_for(section, model_name)
    _set_threads(cfg["threads"])
    tf.config.experimental.enable_op_determinism()
    out_dir, data_path = Path(out_dir), Path(dataset_npz)
    arrays = load_npz(data_path, train_subset=train_subset, test_subset=test_subset)
    n_train = len(arrays["x_train"])
    if cfg["val_size"] >= n_train:
        raise ValueError(f"val_size {cfg['val_size']} leaves no training images (the training set has {n_train})")
    order = np.random.default_rng(cfg["seed"]).permutation(n_train)  # the torch world's split
    val_idx, train_idx = np.sort(order[: cfg["val_size"]]), np.sort(order[cfg["val_size"]:])
    x = to_nhwc(arrays["x_train"], topo.input_shape).astype(np.float32)
    y = arrays["y_train"].astype(np.int64)
    x_test = to_nhwc(arrays["x_test"], topo.input_shape).astype(np.float32)
    y_test = arrays["y_test"].astype(np.int64)

    model = build_larq_model(model_name, seed=cfg["seed"])
    steps = math.ceil(len(train_idx) / cfg["batch_size"])
    schedule = WarmupCosine(cfg["lr"], cfg["lr_min"], cfg["warmup_epochs"] * steps, steps * cfg["epochs"],
                            cfg["schedule"] == "cosine")
    if cfg["optimizer"] == "adam":
        optimizer = tf.keras.optimizers.Adam(schedule, weight_decay=cfg["weight_decay"] or None)
    else:
        optimizer = tf.keras.optimizers.SGD(schedule, momentum=0.9, weight_decay=cfg["weight_decay"] or None)
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True) if cfg["loss"] == "cross_entropy" else sqr_hinge
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    keeper = _BestAndProgress(model_name, cfg["epochs"], schedule)
    board = tf.keras.callbacks.TensorBoard(log_dir=str(out_dir / "tensorboard"), histogram_freq=0, write_graph=False)
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(x[train_idx], y[train_idx], batch_size=cfg["batch_size"], epochs=cfg["epochs"], shuffle=True,
              validation_data=(x[val_idx], y[val_idx]), callbacks=[keeper, board], verbose=2 if progress else 0)
    train_seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    model.set_weights(keeper.best["weights"])
    with lq.context.quantized_scope(True):
        test_loss, test_acc = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / "model.h5"
    save_model(model, model_path)
    write_history_csv(keeper.rows, out_dir / "history.csv")
    plot_curves(keeper.rows, out_dir / "curves.png", f"{model_name} (Larq): best val "
                f"{100 * keeper.best['val_accuracy']:.2f}% (epoch {keeper.best['epoch']}), test {100 * test_acc:.2f}%")
    metrics = {
        "model": model_name,
        "framework": "larq",
        "dataset": data_path.stem,
        "test_accuracy": float(test_acc),
        "test_loss": float(test_loss),
        "val_accuracy": keeper.best["val_accuracy"],
        "best_epoch": keeper.best["epoch"],
        "epochs": cfg["epochs"],
        "train_seconds": round(train_seconds, 3),
        "train_cpu_seconds": round(cpu_seconds, 3),
        "seed": cfg["seed"],
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "n_test": int(len(y_test)),
        "recipe": cfg,
        "footprint": weight_footprint(model),
        "checkpoint_sha256": file_sha256(model_path),
        "versions": {"tensorflow": tf.__version__, "larq": _larq_version()},
    }
    write_json_atomic(out_dir / "metrics.json", metrics)
    print(f"{model_name}: test accuracy {100 * test_acc:.2f}% after {cfg['epochs']} epochs, {train_seconds:.0f} s",
          flush=True)
    return metrics


def _larq_version() -> str:
    from importlib.metadata import version

    return version("larq")


def import_larq(model_file: str | Path, model_name: str, dataset_npz: str | Path, out_dir: str | Path,
                section: dict[str, Any], train_subset: int | None = None, test_subset: int | None = None) -> dict:
    """Take a user's saved Larq / Keras model in place of training: checked, measured, copied to out_dir/model.h5.

    The file must load (ModelFileError) and convert exactly (ConversionError) before anything is written. Its
    history.csv is one row, epoch 0, "as imported": loss and accuracy measured on the same train / validation
    split training would use (the recipe's ``val_size`` and ``seed``); the loss is cross-entropy of the logits.
    curves.png plots that one point; tensorboard/ gets the same scalars.
    """
    from larq_models.convert import convert, load_keras_model
    from larq_models.export import larq_logits

    cfg = recipe_for({**section, "dropout": 0.0}, model_name)
    model = load_keras_model(model_file)
    conversion = convert(model)
    c, h, w = conversion.input_shape_nchw
    arrays = load_npz(dataset_npz, train_subset=train_subset, test_subset=test_subset)
    n_train = len(arrays["x_train"])
    if cfg["val_size"] >= n_train:
        raise ValueError(f"val_size {cfg['val_size']} leaves no training images (the training set has {n_train})")
    order = np.random.default_rng(cfg["seed"]).permutation(n_train)
    val_idx, train_idx = np.sort(order[: cfg["val_size"]]), np.sort(order[cfg["val_size"]:])
    x = to_nhwc(arrays["x_train"], (h, w, c))
    y = arrays["y_train"].astype(np.int64)
    scores = {}
    for split, idx in (("train", train_idx), ("val", val_idx), ("test", None)):
        xs = to_nhwc(arrays["x_test"], (h, w, c)) if idx is None else x[idx]
        ys = arrays["y_test"].astype(np.int64) if idx is None else y[idx]
        logits = larq_logits(model, conversion, xs)
        loss = float(np.mean(tf.keras.losses.sparse_categorical_crossentropy(ys, logits, from_logits=True)))
        scores[split] = (loss, float(np.mean(logits.argmax(1) == ys)), len(ys))
    row = {"epoch": 0, "lr": 0.0, "train_loss": scores["train"][0], "train_accuracy": scores["train"][1],
           "val_loss": scores["val"][0], "val_accuracy": scores["val"][1], "epoch_seconds": 0.0}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / "model.h5"
    save_model(model, model_path)
    write_history_csv([row], out_dir / "history.csv")
    plot_curves([row], out_dir / "curves.png", f"{model_name}: imported from {Path(model_file).name}, "
                f"test {100 * scores['test'][1]:.2f}%")
    writer = tf.summary.create_file_writer(str(out_dir / "tensorboard"))
    with writer.as_default():
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            tf.summary.scalar(key.replace("_", "/", 1), row[key], step=0)
    writer.close()
    metrics = {
        "model": model_name, "framework": "larq", "imported_from": str(model_file),
        "imported_sha256": file_sha256(model_file), "dataset": Path(dataset_npz).stem,
        "test_accuracy": scores["test"][1], "test_loss": scores["test"][0], "val_accuracy": scores["val"][1],
        "best_epoch": 0, "epochs": 0, "train_seconds": 0.0, "train_cpu_seconds": 0.0, "seed": cfg["seed"],
        "n_train": int(len(train_idx)), "n_val": int(len(val_idx)), "n_test": scores["test"][2],
        "recipe": None, "footprint": weight_footprint(model), "checkpoint_sha256": file_sha256(model_path),
        "versions": {"tensorflow": tf.__version__, "larq": _larq_version()},
    }
    write_json_atomic(out_dir / "metrics.json", metrics)
    print(f"{model_name}: imported {model_file}, test accuracy {100 * scores['test'][1]:.2f}%", flush=True)
    return metrics
