"""Tests of the Larq world (larq_models/). They run in the Larq environment: `make test` calls
`.venv-larq/bin/python -m pytest -m larq_env tests/larq_models`. In another environment (no TensorFlow /
Larq there by design) this folder is not collected; the main run covers the main-world side of the Larq path
(tests/hw_builds/test_larq_proof.py, the pipeline test).
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("larq") is None or importlib.util.find_spec("tensorflow") is None:
    collect_ignore_glob = ["test_*.py"]
else:
    import larq_models  # noqa: F401 - TF_USE_LEGACY_KERAS before anything imports TensorFlow
