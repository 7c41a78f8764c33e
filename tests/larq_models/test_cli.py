"""larq_models' command line: training, a user's model imported, export; refused input exits 2 and writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from larq_models.__main__ import main

pytestmark = pytest.mark.larq_env
REPO = Path(__file__).resolve().parents[2]
RECIPE = {"epochs": 2, "batch_size": 50, "optimizer": "adam", "lr": 0.02, "lr_min": 0.0, "schedule": "cosine",
          "warmup_epochs": 0, "weight_decay": 0.0, "loss": "cross_entropy", "dropout": 0.0, "val_size": 100,
          "seed": 0, "threads": 1, "overrides": {}}


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """A learnable synthetic 28x28 set: class k lights up row block k (600 train, 100 test images)."""
    rng = np.random.default_rng(0)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 100, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(y):
            x[i, 2 * k + 4: 2 * k + 6] = 255
        return x, y

    (xt, yt), (xs, ys) = make(600), make(100)
    path = tmp_path_factory.mktemp("digits") / "digits.npz"
    np.savez(path, x_train=xt, y_train=yt, x_test=xs, y_test=ys)
    return path


@pytest.fixture(scope="module")
def trained(digits: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train")
    assert main(["train", "--model", "tfc_w1a1_larq", "--dataset", str(digits), "--out-dir", str(out),
                 "--recipe", json.dumps(RECIPE)]) == 0
    return out


def test_training_outputs(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["framework"] == "larq" and metrics["epochs"] == 2 and metrics["n_val"] == 100
    assert metrics["test_accuracy"] > 0.5  # far above chance (0.1) on the synthetic classes
    assert metrics["footprint"]["compression_ratio"] == 32.0
    history = (trained / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy") and len(history) == 3
    assert (trained / "curves.png").stat().st_size > 1000
    assert any((trained / "tensorboard").rglob("events.out.tfevents.*"))


def test_export_writes_consistent_files(trained: Path, digits: Path, tmp_path: Path) -> None:
    out = tmp_path / "larq"
    assert main(["export", "--model-file", str(trained / "model.h5"), "--dataset", str(digits), "--out-dir", str(out),
                 "--golden-samples", "20"]) == 0
    with np.load(out / "test_logits.npz") as t, np.load(out / "golden.npz") as g:
        assert t["logits"].shape == (100, 10) and np.array_equal(t["y_pred"], t["logits"].argmax(1))
        assert np.array_equal(g["logits"], t["logits"][g["indices"]]) and g["x"].shape == (20, 1, 28, 28)
        accuracy = float(np.mean(t["y_pred"] == t["y_true"]))
    metrics = json.loads((trained / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-6)  # the same forward as training's evaluate
    assert json.loads((out / "convert.json").read_text())["larq_top1_accuracy"] == accuracy


def test_import_of_a_user_model(trained: Path, digits: Path, tmp_path: Path) -> None:
    out = tmp_path / "imported"
    assert main(["import", "--model", "tfc_w1a1_larq", "--model-file", str(trained / "model.h5"), "--dataset",
                 str(digits), "--out-dir", str(out), "--recipe", json.dumps(RECIPE)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    trained_metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["imported_from"].endswith("model.h5") and metrics["epochs"] == 0
    assert metrics["test_accuracy"] == pytest.approx(trained_metrics["test_accuracy"], abs=1e-6)
    assert metrics["val_accuracy"] == pytest.approx(trained_metrics["val_accuracy"], abs=1e-6)
    assert len((out / "history.csv").read_text().splitlines()) == 2


def _doreFa_model(path: Path) -> None:
    inp = tf.keras.Input((28, 28, 1))
    x = tf.keras.layers.Flatten()(inp)
    x = lq.layers.QuantDense(8, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False, name="fc0")(x)
    x = tf.keras.layers.BatchNormalization()(x)
    x = lq.layers.QuantDense(10, input_quantizer=lq.quantizers.DoReFa(k_bit=4, mode="activations"),
                             kernel_quantizer="ste_sign", use_bias=False, name="fc1")(x)
    tf.keras.Model(inp, x).save(path, save_format="h5")


@pytest.mark.parametrize("case", ["unsupported_quantizer", "corrupt_file"])
def test_refused_model_exits_2_and_writes_nothing(case: str, digits: Path, tmp_path: Path, trained: Path) -> None:
    """Run as Snakemake runs it: a separate interpreter; exit 2, one line naming the file / layer, empty out dir."""
    model_file = tmp_path / "user.h5"
    if case == "unsupported_quantizer":
        _doreFa_model(model_file)
        expect = "layer 'fc1' (QuantDense) input_quantizer: quantizer DoReFa is not supported"
    else:
        model_file.write_bytes((trained / "model.h5").read_bytes()[:5000])
        expect = f"{model_file}: not a loadable Keras model"
    out = tmp_path / "out"
    for command in (["export", "--golden-samples", "5"],
                    ["import", "--model", "tfc_w1a1_larq", "--recipe", json.dumps(RECIPE)]):
        run = subprocess.run([sys.executable, "-m", "larq_models", command[0], "--model-file", str(model_file),
                              "--dataset", str(digits), "--out-dir", str(out), *command[1:]],
                             capture_output=True, text=True, cwd=REPO, timeout=600)
        assert run.returncode == 2, run.stderr[-2000:]
        assert expect in run.stderr.strip().splitlines()[-1]
        assert not out.exists() or not any(out.iterdir())


def test_bad_names_and_recipes_refused(digits: Path, tmp_path: Path) -> None:
    assert main(["train", "--model", "tfc_w2a2_larq", "--dataset", str(digits), "--out-dir", str(tmp_path / "a"),
                 "--recipe", json.dumps(RECIPE)]) == 2
    assert main(["train", "--model", "tfc_w1a1_larq", "--dataset", str(digits), "--out-dir", str(tmp_path / "b"),
                 "--recipe", json.dumps({**RECIPE, "dropout": 0.2})]) == 2
    assert main(["train", "--model", "tfc_w1a1_larq", "--dataset", str(tmp_path / "none.npz"), "--out-dir",
                 str(tmp_path / "c"), "--recipe", json.dumps(RECIPE)]) == 2
    assert not any(tmp_path.rglob("*.h5"))


def test_import_and_export_of_a_keras_v3_file(trained: Path, digits: Path, tmp_path: Path) -> None:
    """A user's model saved in the `.keras` format imports and exports as the same model saved as `.h5`."""
    from larq_models.convert import load_keras_model

    keras_file = tmp_path / "user.keras"
    load_keras_model(trained / "model.h5").save(keras_file)
    assert zipfile.is_zipfile(keras_file)  # the Keras v3 format, not HDF5 under another name
    assert main(["import", "--model", "tfc_w1a1_larq", "--model-file", str(keras_file), "--dataset", str(digits),
                 "--out-dir", str(tmp_path / "imported"), "--recipe", json.dumps(RECIPE)]) == 0
    metrics = json.loads((tmp_path / "imported" / "metrics.json").read_text())
    trained_metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["imported_from"].endswith("user.keras")
    assert metrics["test_accuracy"] == pytest.approx(trained_metrics["test_accuracy"], abs=1e-6)
    logits = {}
    for name, model_file in (("h5", trained / "model.h5"), ("keras", keras_file)):
        assert main(["export", "--model-file", str(model_file), "--dataset", str(digits), "--out-dir",
                     str(tmp_path / name), "--golden-samples", "5"]) == 0
        with np.load(tmp_path / name / "test_logits.npz") as t:
            logits[name] = t["logits"]
    assert np.array_equal(logits["h5"], logits["keras"])


def _user_mlp(path: Path, case: str) -> None:
    """A user's TFC-like model with one defect: a float Dense between the binary layers, or no batch norm."""
    inp = tf.keras.Input((28, 28, 1))
    x = tf.keras.layers.Rescaling(2 / 255, offset=-1.0)(inp)
    x = tf.keras.layers.Flatten()(x)
    x = lq.layers.QuantDense(8, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False, name="fc0")(x)
    if case != "missing_bn":
        x = tf.keras.layers.BatchNormalization(name="fc0_bn")(x)
    if case == "float_layer":
        x = tf.keras.layers.Dense(8, name="float_dense")(x)
    x = lq.layers.QuantDense(10, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False, name="fc1")(x)
    tf.keras.Model(inp, x).save(path, save_format="h5")


@pytest.mark.parametrize("case, expect", [
    ("float_layer", "layer 'float_dense' (Dense): a float layer in the middle"),
    ("missing_bn", "layer 'fc1' (QuantDense)"),
])
def test_float_layer_and_missing_batch_norm_exit_2_and_write_nothing(case: str, expect: str, digits: Path,
                                                                    tmp_path: Path, capsys) -> None:
    """The command line (export and import) refuses them: exit 2, one line naming the layer, nothing written."""
    model_file = tmp_path / "user.h5"
    _user_mlp(model_file, case)
    out = tmp_path / "out"
    for command in (["export", "--golden-samples", "5"],
                    ["import", "--model", "tfc_w1a1_larq", "--recipe", json.dumps(RECIPE)]):
        assert main([command[0], "--model-file", str(model_file), "--dataset", str(digits), "--out-dir", str(out),
                     *command[1:]]) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith(f"larq_models {command[0]}: refused: ") and expect in last
        if case == "missing_bn":
            assert "missing batch norm" in last
        assert not out.exists() or not any(out.iterdir())
