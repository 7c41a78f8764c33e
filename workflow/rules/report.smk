# Report stage: plots, results/summary.csv and one self-contained results/report.html across every model and
# board (logic in reporting/). Include this file after every other stage: it reads what they produce;
# a stage the workflow does not make for a model (common.smk's stage_applies: no XNOR reference for a w2a1
# model, so no deployment package and no validation) shows as n/a instead of failing the report.
from reporting.layout import plot_outputs, report_input_files


rule predict_testset:
    input:
        checkpoint="results/{model}/train/checkpoint.pt",
        metrics="results/{model}/train/metrics.json",
        dataset=dataset_npz,
    output:
        "results/{model}/report/test_predictions.npz",
    wildcard_constraints:
        model=BREVITAS_MODEL_RE,
    log:
        "logs/predict_testset/{model}.log",
    threads: 1
    resources:
        **stage_resources("report"),
    conda:
        "../../environment.yml"
    params:
        test_subset=config["data"]["test_subset"],
    script:
        "../scripts/predict_testset.py"


rule render_report:
    input:
        lambda wildcards: report_input_files(
            config["models"],
            config["boards"],
            stage_applies,
            config.get("report", {}).get("benchmarks", []),
            dse=config.get("report", {}).get("dse", False),
        ),
    output:
        html=report("results/report.html", category="Report", labels={"file": "report.html"}),
        csv=report("results/summary.csv", category="Report", labels={"file": "summary.csv"}),
        **{
            name: report(path, category="Plots", labels=labels)
            for name, (path, labels) in plot_outputs("results/plots", config["models"], config["boards"]).items()
        },
    log:
        "logs/render_report/report.log",
    threads: 1
    resources:
        **stage_resources("report"),
    conda:
        "../../environment.yml"
    params:
        models=config["models"],
        boards=config["boards"],
    script:
        "../scripts/render_report.py"
