"""The FINN world of bnnflow: the board-independent front end per model, dataflow builds per board, their
verification and estimates, and the XNOR reference's export from FINN's graph.

Front-end outputs land in results/<model>/frontend/, build outputs in hw_builds/<model>/<board>/ (git-ignored).
"""
