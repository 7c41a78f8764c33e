"""The report stage: one self-contained HTML page, summary.csv and plots across every model and board.

Numpy / pandas / matplotlib only (no torch, no finn-plus), so that rendering is quick and runs
anywhere the result files are. The one exception is :mod:`hw_builds.report.predictions`, the small
torch step that writes the test-set predictions the confusion matrix is drawn from; it is run by
its own rule and imported by nothing here.
"""
