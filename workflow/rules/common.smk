# Shared helpers for the rules: wildcard constraints, data set choice per model, the targets of `all`.
import re

MODEL_RE = r"(tfc|sfc|lfc|cnv)_w[12]a[12]"
BOARD_RE = r"[A-Za-z0-9_-]+"


wildcard_constraints:
    model=MODEL_RE,
    board=BOARD_RE,
    dataset=r"mnist|fashion_mnist|cifar10",


def dataset_of(model: str) -> str:
    """The data set a model trains and is validated on: CNV uses cnv_dataset, the MLPs mlp_dataset."""
    family = model.split("_")[0]
    return config["data"]["cnv_dataset" if family == "cnv" else "mlp_dataset"]


def dataset_npz(wildcards) -> str:
    """Input function: the prepared data set file of the model in the wildcards."""
    return f"resources/{dataset_of(wildcards.model)}.npz"


def all_targets() -> list[str]:
    """Every final output of the pipeline for the configured models and boards."""
    models, boards = config["models"], config["boards"]
    targets = sorted({f"resources/{dataset_of(m)}.npz" for m in models})
    return targets
