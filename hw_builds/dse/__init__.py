"""Design-space exploration: the fastest FINN folding of a network that fits a board.

``graph`` prepares the HW graph as the build has it when FINN estimates (front end up to
specialization, then the build's folding-independent steps); ``space`` lists each layer's legal
foldings with FINN's own cycle and resource estimates; ``bounds`` derives the fabric and I/O
bounds; ``search`` picks one option per layer (fastest, then fewest LUT, then fewest BRAM);
``setfolding`` runs FINN's SetFolding for comparison; ``explore`` is what the Snakemake rule calls
(the sweep's table and plots are in ``reporting.dse``).
"""

# Why a convolutional network is refused (by the config check of workflow/rules/common.smk, before anything runs,
# and by hw_builds.dse.space on the graph); kept here, free of FINN imports, so the workflow can read it at parse time.
CNV_REFUSAL = ("the folding search covers dense (MLP) networks only: a CNV's sliding-window generators and "
               "pooling layers must fold with their MVAU's SIMD (FINN's coupled-layer rules), which its "
               "layer-by-layer dynamic programme does not model; build a CNV with finn.target_fps or a "
               "folding JSON instead")
