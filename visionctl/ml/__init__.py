"""The model pipeline: data, network, training, ONNX export, model cards, evaluation, test variants."""
