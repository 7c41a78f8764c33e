"""Admission of a QONNX export: the one check of what bnnflow builds, before any FINN step runs on it.

The FINN front end reads the exported graph once, and both the per-board builds and the XNOR reference
start from what it makes, so this check decides for every stage whether a graph is accepted. It runs
right after :func:`hw_builds.execute.load_model` and before any verification, so a graph outside the
definition is refused with the first offending node and why, not as a FINN assertion or a mismatch
against Brevitas several steps later:

1. Attributes that ONNX lets a node leave out (``Conv``/``MaxPool``'s ``strides``, ``pads``,
   ``dilations``, ``group``) are written out with their ONNX defaults: FINN's and qonnx's
   transformations read them without a default (``'NoneType' object has no attribute 'ints'``); the
   function does not change.
2. One graph input (the pixels), at least one QONNX quantizer (custom_steps.step_annotate_uint8_input's
   rule, applied before anything runs).
3. The network's exact function (hw_builds.exact_function.exact_network): every layer a MatMul / Conv
   of quantized weights on quantized codes, batch norm and an activation quantizer between layers,
   a positive output affine. A float layer (a Conv on the pixels, a MatMul whose weight quantizer is
   gone) is named here.
"""

from __future__ import annotations

from pathlib import Path

from hw_builds.custom_steps import UnsupportedModelError, require_quantizer
from hw_builds.exact_function import ExactFunctionError, exact_network

# ONNX operator defaults of optional attributes that FINN reads unconditionally (ONNX operator docs,
# opset 11+): a Conv's kernel_shape is its weight's spatial shape; strides 1, pads 0, dilations 1 per
# spatial axis; group 1.
SPATIAL_DEFAULTS = {"Conv": ("kernel_shape", "strides", "pads", "dilations", "group"), "MaxPool": ("strides", "pads")}


def _kernel(model, node) -> list[int]:
    """The spatial kernel of a Conv / MaxPool: its kernel_shape, else (Conv) its weight's (M, C, *kernel) shape."""
    from onnx.helper import get_attribute_value

    attrs = {a.name: get_attribute_value(a) for a in node.attribute}
    if "kernel_shape" in attrs:
        return [int(k) for k in attrs["kernel_shape"]]
    shape = model.get_tensor_shape(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
    if not shape or len(shape) < 3:
        raise UnsupportedModelError(f"node {node.name} ({node.op_type}): no kernel_shape and no weight shape to infer it")
    return [int(k) for k in shape[2:]]


def explicit_defaults(model) -> list[str]:
    """Write the ONNX defaults of the attributes in :data:`SPATIAL_DEFAULTS` into nodes that omit them.

    Returns "node: attribute" for each one added (the function is unchanged: these are the values ONNX
    means by their absence).
    """
    from onnx import helper

    added = []
    for node in model.graph.node:
        wanted = SPATIAL_DEFAULTS.get(node.op_type)
        if not wanted:
            continue
        present = {a.name for a in node.attribute}
        missing = [name for name in wanted if name not in present]
        if not missing:
            continue
        kernel = _kernel(model, node)
        rank = len(kernel)
        defaults = {"kernel_shape": kernel, "strides": [1] * rank, "pads": [0] * (2 * rank), "dilations": [1] * rank,
                    "group": 1}
        for name in missing:
            node.attribute.append(helper.make_attribute(name, defaults[name]))
            added.append(f"{node.name}: {name}")
    return added


def admit_qonnx(model, source: str | Path):
    """Check (and complete) the QONNX graph ``model`` read from ``source``; return it, ready for FINN.

    Raises :class:`hw_builds.custom_steps.UnsupportedModelError` (a refused input, exit status 2)
    naming ``source`` and the first node outside what bnnflow builds, and why.
    """
    inputs = [i.name for i in model.graph.input if model.get_initializer(i.name) is None]
    if len(inputs) != 1:
        raise UnsupportedModelError(f"{source}: expected one graph input (the pixels), found {inputs}")
    try:
        require_quantizer(model)
        added = explicit_defaults(model)
        exact_network(model)
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(f"{source}: {exc}") from exc
    except ExactFunctionError as exc:
        raise UnsupportedModelError(f"{source}: not a network bnnflow builds: {exc}") from exc
    if added:
        print(f"[bnnflow] {source}: ONNX default attributes written out: {', '.join(added)}", flush=True)
    return model
