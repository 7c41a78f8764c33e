"""Export stage: one self-contained QONNX file per family whose qonnx execution equals Brevitas exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from models import export_stage as stage
from models.export import execute_qonnx, export_qonnx
from models.checkpoint import load_checkpoint
from models.train import train_model

FAMILY_MODELS = ["tfc_w1a1", "sfc_w1a2", "lfc_w2a2", "cnv_w1a1"]


@pytest.fixture(scope="module")
def trained(small_mnist: Path, tmp_path_factory: pytest.TempPathFactory, tiny_recipe: dict):
    """name -> checkpoint of a one-epoch run on real MNIST (CNV on MNIST padded to 3x32x32)."""
    out = {}
    for name in FAMILY_MODELS:
        folder = tmp_path_factory.mktemp(name)
        recipe = {**tiny_recipe, "epochs": 1}
        train_model(name, small_mnist, folder, recipe, train_subset=300 if name.startswith("cnv") else None, progress=False)
        out[name] = folder / "checkpoint.pt"
    return out


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_export_stage_round_trip(name: str, trained: dict, small_mnist: Path, tmp_path: Path) -> None:
    result = stage.export_stage(trained[name], small_mnist, tmp_path, n_golden=24, seed=3, atol=0.0)
    assert result["passed"] and result["max_abs_diff"] == 0.0 and result["bit_exact_samples"] == 24
    assert sorted(p.name for p in tmp_path.iterdir()) == ["golden.npz", "model.onnx", "roundtrip.json"]
    # one self-contained file: every initializer inline
    proto = onnx.load(str(tmp_path / "model.onnx"), load_external_data=False)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    golden = np.load(tmp_path / "golden.npz")
    shape = (1, 28, 28) if not name.startswith("cnv") else (3, 32, 32)
    assert golden["x"].dtype == np.uint8 and golden["x"].shape == (24, *shape)
    assert golden["labels"].dtype == np.int64 and golden["indices"].dtype == np.int64
    assert golden["logits"].dtype == np.float32 and golden["logits"].shape == (24, 10)
    assert np.all(np.diff(golden["indices"]) > 0) and golden["indices"].max() < len(np.load(small_mnist)["y_test"])
    # golden logits are the Brevitas outputs, and an independent qonnx run of the file reproduces them
    model = load_checkpoint(trained[name])
    with torch.no_grad():
        assert np.array_equal(model(torch.from_numpy(golden["x"]).float()).numpy(), golden["logits"])
    assert np.array_equal(execute_qonnx(tmp_path / "model.onnx", golden["x"].astype(np.float32)), golden["logits"])
    assert json.loads((tmp_path / "roundtrip.json").read_text())["passed"] is True


def test_mismatch_fails_the_stage_and_writes_nothing(trained: dict, small_mnist: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real = stage.execute_qonnx

    def off_by_a_bit(path, x):
        y = real(path, x)
        y[3, 0] += 1e-3
        return y

    monkeypatch.setattr(stage, "execute_qonnx", off_by_a_bit)
    with pytest.raises(stage.ExportMismatchError, match="differs from Brevitas"):
        stage.export_stage(trained["tfc_w1a1"], small_mnist, tmp_path, n_golden=8, atol=0.0)
    assert list(tmp_path.iterdir()) == []


def test_compare_logits_flags_top1_flip_even_within_atol() -> None:
    ref = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    cand = np.array([[0.0, 1.0], [1.0, 1.0 + 1e-6]], dtype=np.float32)
    result = stage.compare_logits(ref, cand, atol=1e-3)
    assert not result["passed"] and result["mismatched_indices"] == [1]


def test_golden_sample_is_seeded_sorted_and_clipped() -> None:
    a, b = stage.golden_sample(10_000, 100, 0), stage.golden_sample(10_000, 100, 0)
    assert np.array_equal(a, b) and len(np.unique(a)) == 100 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, stage.golden_sample(10_000, 100, 1))
    assert np.array_equal(stage.golden_sample(50, 100, 0), np.arange(50))


def test_export_rejects_wrong_input_shape(trained: dict, tmp_path: Path) -> None:
    path = export_qonnx(load_checkpoint(trained["tfc_w1a1"]), tmp_path / "m.onnx", (1, 1, 28, 28))
    with pytest.raises(ValueError, match="does not match"):
        execute_qonnx(path, np.zeros((2, 3, 32, 32), np.float32))


def test_export_leaves_model_mode_and_no_side_files(tmp_path: Path) -> None:
    from models.topologies import build_model

    model = build_model("tfc_w1a1")
    model.train()
    export_qonnx(model, tmp_path / "sub" / "m.onnx", (1, 1, 28, 28))
    assert model.training
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.onnx"]


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_finn_accepts_the_export(name: str, trained: dict, tmp_path: Path) -> None:
    """finn-plus's own steps take the file down to hardware layers: one MVAU per weight layer, nothing left over."""
    from hw_builds.finn_env import import_build_steps

    steps = import_build_steps()
    from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper

    brevitas_model = load_checkpoint(trained[name])
    shape = (1, *brevitas_model.spec.topology.input_shape)
    path = export_qonnx(brevitas_model, tmp_path / "m.onnx", shape)
    model = ModelWrapper(str(path))
    model.set_tensor_datatype(model.graph.input[0].name, DataType["UINT8"])
    cfg = DataflowBuildConfig(output_dir=str(tmp_path / "finn"), synth_clk_period_ns=10.0, target_fps=1000,
                              generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS], board="Pynq-Z1")
    for step in (steps.step_qonnx_to_finn, steps.step_tidy_up, steps.step_streamline, steps.step_convert_to_hw):
        model = step(model, cfg)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MVAU") == len(brevitas_model.quant_layers())
    assert not {"MultiThreshold", "MatMul", "Conv", "BatchNormalization", "Quant", "BipolarQuant"} & set(ops)
