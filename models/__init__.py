"""The torch world of bnnflow: data preparation, Brevitas BNN topologies, training, QONNX export and test-set predictions."""
