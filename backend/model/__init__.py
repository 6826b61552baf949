"""The model side: model cards, image decoding and preprocessing, ONNX inference, explanations and
the verdict on a prediction.

It imports no web framework or server (an import-linter contract), so the CLI, the evaluation and
the benchmarks run exactly the code that serves.
"""
