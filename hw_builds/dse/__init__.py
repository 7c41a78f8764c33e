"""Design-space exploration: the fastest FINN folding of a network that fits a board.

``graph`` prepares the HW graph as the build has it when FINN estimates (front end up to
specialization, then the build's folding-independent steps); ``space`` lists each layer's legal
foldings with FINN's own cycle and resource estimates; ``bounds`` derives the fabric and I/O
bounds; ``search`` picks one option per layer (fastest, then fewest LUT, then fewest BRAM);
``setfolding`` runs FINN's SetFolding for comparison; ``explore`` is what the Snakemake rule calls
(the sweep's table and plots are in ``reporting.dse``).
"""
