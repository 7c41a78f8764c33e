"""bnnflow's Larq world: Larq / Keras BNNs (training, a user's saved model) and their conversion to QONNX.

This package runs only in the Larq environment (``.venv-larq``, requirements-larq.lock: TensorFlow 2.16,
tf-keras, Larq 0.14, numpy < 2). It imports neither torch, FINN nor host/, and nothing outside it imports it:
Snakemake runs it as ``.venv-larq/bin/python -m larq_models ...``. Larq 0.14 needs Keras 2, so the legacy
Keras switch is set here, before any module imports TensorFlow.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # Larq 0.14 is built on tf-keras (Keras 2), not Keras 3
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info / warning lines drown the logs
