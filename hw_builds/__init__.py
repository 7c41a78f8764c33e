"""The FINN world of bnnflow: dataflow builds per model and board, their verification and estimates.

Build outputs land in hw_builds/<model>/<board>/ and are git-ignored.
"""
