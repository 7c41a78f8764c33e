"""The report: one self-contained HTML page, summary.csv and plots across every model and board.

Numpy / pandas / matplotlib only (no torch, no finn-plus): it reads only stage outputs (JSON, CSV,
npz: training metrics, FINN build summaries, XNOR verification, validation, benchmarks, the test-set
predictions written by :mod:`models.predict`) through one loader, :mod:`reporting.inputs`, and imports
none of the other worlds' modules except host's atomic writers for its own outputs.
"""
