"""Feature tables and ONNX / TensorFlow towers for an existing ranker (a later issue)."""
