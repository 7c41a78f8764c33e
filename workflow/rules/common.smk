# Shared helpers for the rules: wildcard constraints, data set choice per model, the targets of `all`.
import json
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


def refuse_invalid_config(schema: str) -> None:
    """Validate the config; a violation is one line naming the key (train.overrides.tfc_w1a1.lr) and exit 2."""
    try:
        validate(config, schema)
    except WorkflowError as err:
        cause = err.__context__  # jsonschema's ValidationError (WorkflowError keeps only its text)
        if not hasattr(cause, "absolute_path"):
            raise
        key = ".".join(str(part) for part in cause.absolute_path) or "(top level)"
        print(f"config: refused: {key}: {cause.message}", file=sys.stderr)
        sys.exit(2)  # refused input, as every bnnflow stage exits on it


from models.topology_spec import TopologyError, resolve_entry


def refuse_config(message: str) -> None:
    """A config the schema accepts but bnnflow cannot build: one line on stderr, exit status 2 (as
    refuse_invalid_config)."""
    print(f"config: refused: {message}", file=sys.stderr)
    sys.exit(2)


def names_re(names) -> str:
    """An alternation of literal names; a regex that matches nothing when there are none."""
    return "|".join(re.escape(name) for name in sorted(names)) or r"(?!x)x"


# User data sets (data.user_datasets: a user's .npz, prepared by rule prepare_user_dataset) beside the built-in ones.
BUILTIN_DATASETS = ("mnist", "fashion_mnist", "cifar10")
USER_DATASETS = config.get("data", {}).get("user_datasets") or {}  # read before the schema check: defensive
DATASET_CLASSES = {**{name: 10 for name in BUILTIN_DATASETS},
                   **{name: entry.get("classes", 10) for name, entry in USER_DATASETS.items()}}
# Topologies as data (config topologies:): Brevitas models trained by the same recipe as the built-in four.
USER_TOPOLOGIES = config.get("topologies") or {}
# Imported models (config imports:): a user's QONNX file checked and imported instead of trained and exported.
IMPORTS = config.get("imports") or {}

# A model name says its family, bit widths and framework: Brevitas by default, Larq with the suffix _larq
# (binary only: <family>_w1a1_larq; its stages run in the Larq environment, workflow/rules/larq.smk);
# or it is a key of topologies: (a Brevitas model of that shape).
USER_MODEL_RE = names_re(USER_TOPOLOGIES)
IMPORT_MODEL_RE = names_re(IMPORTS)
MODEL_RE = rf"(tfc|sfc|lfc|cnv)_w[12]a[12](_larq)?|{USER_MODEL_RE}|{IMPORT_MODEL_RE}"
BREVITAS_MODEL_RE = rf"(tfc|sfc|lfc|cnv)_w[12]a[12]|{USER_MODEL_RE}"
LARQ_MODEL_RE = r"(tfc|sfc|lfc|cnv)_w1a1_larq"
BOARD_RE = r"[A-Za-z0-9_-]+"


wildcard_constraints:
    model=MODEL_RE,
    board=BOARD_RE,
    dataset=names_re(DATASET_CLASSES),


def dataset_of(model: str) -> str:
    """The data set a model trains and is validated on: a topology's own `dataset`, else CNV and conv
    topologies use cnv_dataset, the MLPs mlp_dataset."""
    entry = USER_TOPOLOGIES.get(model) or IMPORTS.get(model) or {}
    if entry.get("dataset"):
        return entry["dataset"]
    family = model.split("_")[0]
    is_conv = family == "cnv" or entry.get("kind") == "conv"
    return config["data"]["cnv_dataset" if is_conv else "mlp_dataset"]


def dataset_npz(wildcards) -> str:
    """Input function: the prepared data set file of the model in the wildcards."""
    return f"resources/{dataset_of(wildcards.model)}.npz"


def topology_of(model: str) -> dict | None:
    """The config-declared topology entry of a model (None for a built-in name)."""
    return USER_TOPOLOGIES.get(model)


def classes_of(model: str) -> int:
    """The number of classes of the model's data set (10 for the built-in sets, declared for a user's)."""
    return DATASET_CLASSES[dataset_of(model)]


def check_models_config() -> None:
    """Refuse at config time, with the reason: an unknown data set name, a topology FINN or the XNOR
    reference cannot map (models/topology_spec.py), a topology whose input the data set cannot feed.
    Called by the Snakefile after the schema check; a refusal is one line and exit status 2."""
    from host.inputs import to_model_input
    import numpy as np

    clash = sorted(set(USER_DATASETS) & set(BUILTIN_DATASETS))
    if clash:
        refuse_config(f"data.user_datasets: {clash} would shadow a built-in data set; choose another name")
    for key in ("mlp_dataset", "cnv_dataset"):
        if config["data"][key] not in DATASET_CLASSES:
            refuse_config(f"data.{key}: {config['data'][key]!r} is neither a built-in data set "
                          f"{list(BUILTIN_DATASETS)} nor declared in data.user_datasets")
    both = sorted(set(USER_TOPOLOGIES) & set(IMPORTS))
    if both:
        refuse_config(f"topologies: and imports: both declare {both}; a model is trained or imported, not both")
    for model in config["models"]:
        if is_larq(model):
            continue
        if model in IMPORTS:
            check_import_config(model)
            continue
        dataset = dataset_of(model)
        if dataset not in DATASET_CLASSES:
            refuse_config(f"topologies.{model}.dataset: {dataset!r} is neither a built-in data set "
                          f"{list(BUILTIN_DATASETS)} nor declared in data.user_datasets")
        try:
            entry = resolve_entry(model, USER_TOPOLOGIES)
        except TopologyError as err:
            refuse_config(f"models: {err}")
        try:
            to_model_input(np.zeros((1, *image_shape_of(dataset)), np.uint8), tuple(entry["input_shape"]))
        except ValueError as err:
            refuse_config(f"model {model!r} on data set {dataset!r}: {err}")


def image_shape_of(dataset: str) -> tuple[int, ...]:
    """One image of a data set as prepared (NHW / NHWC): MNIST's 28x28, CIFAR-10's 32x32x3, a user's declared."""
    declared = USER_DATASETS.get(dataset)
    if declared is None:
        return (28, 28) if dataset != "cifar10" else (32, 32, 3)
    image = tuple(declared["image_shape"])
    return (*image[1:], image[0]) if declared["layout"] == "NCHW" else image


def check_import_config(model: str) -> None:
    """An import's data set must be known and its images must feed the declared input (the file itself is
    checked by the import rule, hw_builds/model_import.py, before any long stage)."""
    from host.inputs import to_model_input
    import numpy as np

    entry = IMPORTS[model]
    if entry["dataset"] not in DATASET_CLASSES:
        refuse_config(f"imports.{model}.dataset: {entry['dataset']!r} is neither a built-in data set "
                      f"{list(BUILTIN_DATASETS)} nor declared in data.user_datasets")
    try:
        to_model_input(np.zeros((1, *image_shape_of(entry["dataset"])), np.uint8), tuple(entry["input_shape"]))
    except ValueError as err:
        refuse_config(f"imports.{model}: input_shape {entry['input_shape']} on data set {entry['dataset']!r}: {err}")


def is_import(model: str) -> bool:
    """Whether the model is imported from a user's ONNX file (config imports:)."""
    return model in IMPORTS


# The XNOR reference (and so the deployment package and its validation) covers every family (MLPs and CNV)
# as w1a1, w1a2 and w2a2 (ternary weights); w2a1 has no FINN HW mapping (FINN refuses it) and stops earlier.
# Config topologies are all covered: check_models_config refuses the others before anything runs.
XNOR_MODEL_RE = rf"(tfc|sfc|lfc|cnv)_(w1a[12]|w2a2)(_larq)?|{USER_MODEL_RE}|{IMPORT_MODEL_RE}"


def is_larq(model: str) -> bool:
    """Whether the model is a Larq model (trained or imported and converted in the Larq environment)."""
    return re.fullmatch(LARQ_MODEL_RE, model) is not None




def cli_value(value) -> str:
    """A config value as a command-line argument of larq_models: None -> "null"."""
    return "null" if value is None else str(value)


def framework_reference(wildcards) -> str:
    """Input function: what verify_xnor compares as the training framework's forward (Brevitas' checkpoint,
    or Larq's logits on the test set from the Larq export)."""
    if is_larq(wildcards.model):
        return f"results/{wildcards.model}/larq/test_logits.npz"
    if is_import(wildcards.model):
        return f"results/{wildcards.model}/export/test_logits.npz"
    return f"results/{wildcards.model}/train/checkpoint.pt"


def has_xnor_reference(model: str) -> bool:
    return re.fullmatch(XNOR_MODEL_RE, model) is not None


def stage_applies(path: str) -> bool:
    """Whether the workflow makes this stage output for the model it names (XNOR, validation: see XNOR_MODEL_RE)."""
    parts = path.split("/")
    model = next((part for part in parts if re.fullmatch(MODEL_RE, part)), None)
    needs_xnor = bool({"xnor", "deploy", "validation.json"} & set(parts))
    return model is None or not needs_xnor or has_xnor_reference(model)


def all_targets() -> list[str]:
    """Every final output of the pipeline for the configured models and boards."""
    models, boards = config["models"], config["boards"]
    targets = sorted({f"resources/{dataset_of(m)}.npz" for m in models})
    targets += [f"results/{m}/xnor/verify.json" for m in models]
    targets += [f"hw_builds/{m}/{b}/summary.json" for m in models for b in boards]
    targets += [f"results/{m}/{b}/validation.json" for m in models for b in boards]
    # the XNOR benchmark as the report lists it (default config: listed; a config with report.benchmarks: [] skips it)
    if "xnor" in config.get("report", {}).get("benchmarks", ["xnor"]):
        targets.append("results/bench/xnor.json")
    targets += ["results/report.html", "results/verdicts.json"]
    return [t for t in targets if stage_applies(t)]


def validation_reports(wildcards=None) -> list[str]:
    """Every validation.json of the configured models and boards (those that have an XNOR reference)."""
    paths = [f"results/{m}/{b}/validation.json" for m in config["models"] for b in config["boards"]]
    return [p for p in paths if stage_applies(p)]


# What the jobs ask the scheduler for (config `resources`): the local scheduler and SLURM (profiles/slurm) read the
# same numbers. A retried job (the profile's `retries`) gets `attempt` times the memory and the runtime, so a job
# killed for memory or time is not retried with the limit that killed it.
def _resource_table() -> dict:
    """config['resources'], or the defaults of workflow/config.yaml for a config that has none (rule tests)."""
    if "resources" in config:
        return config["resources"]
    import yaml

    with open(f"{workflow.current_basedir}/../config.yaml") as defaults:
        return yaml.safe_load(defaults)["resources"]


RESOURCE_TABLE = _resource_table()


def scaled(value: int):
    """A resource callable: value on the first attempt, value * attempt on retries."""
    return lambda wildcards, attempt: value * attempt


def stage_resources(stage: str) -> dict:
    """mem_mb (MiB) and runtime (minutes) of one stage in config `resources`, as rule resources."""
    entry = RESOURCE_TABLE[stage]
    return {"mem_mb": scaled(entry["mem_mb"]), "runtime": scaled(entry["runtime"])}


def finn_build_resources(board: str) -> dict:
    """threads, mem_mb and runtime of a FINN build for board: the software steps for target emulation, Vivado's
    hours and gigabytes (per-board overrides in resources.compile_finn_hardware.boards) for target hardware."""
    if config["finn"]["target"] != "hardware":
        return {"threads": 1, **RESOURCE_TABLE["compile_finn"]}
    hardware = RESOURCE_TABLE["compile_finn_hardware"]
    merged = {key: hardware[key] for key in ("threads", "mem_mb", "runtime")}
    merged.update(hardware.get("boards", {}).get(board, {}))
    return merged


def finn_build_resource(key: str):
    """A resource callable for compile_finn: finn_build_resources(board)[key], times attempt for memory/runtime."""
    return lambda wildcards, attempt: finn_build_resources(wildcards.board)[key] * attempt


# The design-space exploration's settings (`snakemake dse`); a config without a dse section sweeps nothing.
DSE = config.get("dse", {})


def refuse_dse_convolutions() -> None:
    """A CNV in dse.models: one line with the reason, exit status 2 (the search covers dense networks)."""
    if any(m.startswith("cnv") for m in DSE.get("models", [])):
        from hw_builds.dse import CNV_REFUSAL

        print(f"config: refused: dse.models: {', '.join(m for m in DSE['models'] if m.startswith('cnv'))} refused: "
              f"{CNV_REFUSAL}", file=sys.stderr)
        sys.exit(2)  # refused input, one line, as refuse_invalid_config


def dse_searches() -> list[str]:
    """The search result of every model x board of the sweep (plain paths, so a dry run lists every search)."""
    return [f"results/dse/{m}/{b}/search.json" for m in DSE.get("models", []) for b in DSE.get("boards", [])]


def dse_builds(wildcards) -> list[str]:
    """The build and package of every search that found a fitting design (read from its result: a checkpoint)."""
    builds = []
    for model in DSE.get("models", []):
        for board in DSE.get("boards", []):
            search = checkpoints.search_folding.get(model=model, board=board).output.search
            if DSE.get("build", True) and json.loads(Path(search).read_text())["status"] == "fits":
                builds += [f"hw_builds/{model}/{board}/dse/summary.json", f"hw_builds/{model}/{board}/dse/deploy"]
    return builds
