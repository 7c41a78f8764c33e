"""The torch world of bnnflow: data preparation, Brevitas BNN topologies, training and QONNX export."""
