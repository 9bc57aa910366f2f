"""Feature tables (Parquet, TFRecord, manifest) and the ONNX / TensorFlow towers for an existing ranker."""
