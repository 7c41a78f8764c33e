"""hw_builds.execute: FINN python execution of every build stage, the partitioned ones included."""

from __future__ import annotations

import numpy as np
import pytest

from hw_builds.execute import FinnExecutionError, execute_model, load_model, python_executable, run_finn_model
from hw_builds.verify import load_golden


def test_variant_renaming_leaves_the_original_alone(pynq_z1_build):
    out, summary = pynq_z1_build
    model = load_model(out / summary["hw_model"])
    ops = [n.op_type for n in model.graph.node]
    runnable = python_executable(model)
    assert [n.op_type for n in model.graph.node] == ops  # the build's model is untouched
    assert any(op.endswith("_hls") for op in ops)
    assert [n.op_type for n in runnable.graph.node] == [op.rsplit("_", 1)[0] if op.endswith(("_hls", "_rtl")) else op for op in ops]
    assert all(n.domain == "finn.custom_op.fpgadataflow" for n in runnable.graph.node)


def test_batched_and_per_sample_execution_agree(frontend_tfc):
    """Standard-op graphs run batched; the same graph run one sample at a time gives the same logits."""
    frontend, golden_path = frontend_tfc
    golden = load_golden(golden_path).head(6)
    model = load_model(frontend / "intermediate_models" / "step_tidy_up.onnx")  # a front-end step's graph
    batched = execute_model(model, golden.x)
    single = np.concatenate([execute_model(model, golden.x[i : i + 1]) for i in range(6)])
    np.testing.assert_array_equal(batched, single)
    np.testing.assert_allclose(batched, golden.logits, atol=1e-4)


def test_partition_run_through_its_parent(pynq_z1_build, exported_tfc):
    """The dataflow parent with the folded child in its partition computes what the child alone does."""
    out, summary = pynq_z1_build
    golden = load_golden(exported_tfc[1]).head(5)
    child = out / summary["hw_model"]
    alone = run_finn_model(child, golden.x)
    within = run_finn_model(child, golden.x, parent_path=out / "intermediate_models" / "dataflow_parent.onnx")
    np.testing.assert_array_equal(alone, within)
    # the parent on its own runs the partition file saved at partitioning time (unfolded)
    parent_only = run_finn_model(out / "intermediate_models" / "dataflow_parent.onnx", golden.x)
    np.testing.assert_array_equal(parent_only, alone)


def test_clear_errors(tmp_path, pynq_z1_build):
    with pytest.raises(FinnExecutionError, match="no such ONNX file"):
        load_model(tmp_path / "none.onnx")
    out, summary = pynq_z1_build
    with pytest.raises(FinnExecutionError, match="uint8"):
        run_finn_model(out / summary["hw_model"], np.zeros((1, 1, 28, 28), np.float32))
    with pytest.raises(FinnExecutionError, match="do not fit the model's input"):
        run_finn_model(out / summary["hw_model"], np.zeros((1, 3, 32, 32), np.uint8))
