"""The TensorFlow side of the tower export, run as a child process (never beside torch):

python -m export.tf_towers convert MODEL.onnx OUT_DIR INPUT_NAME...   # onnx2tf -> SavedModel
python -m export.tf_towers check SAVEDMODEL INPUTS.npz                # max |TF - expected| as JSON
"""

from __future__ import annotations

import json
import sys

import numpy as np

from learnkit.core.frameworks import prepare_tensorflow

prepare_tensorflow()


def convert(onnx_path: str, out_dir: str, inputs: list[str]) -> None:
    import onnx2tf

    # keep_shape_absolutely_input_names: without it onnx2tf transposes the inputs and the outputs are wrong
    onnx2tf.convert(
        input_onnx_file_path=onnx_path,
        output_folder_path=out_dir,
        output_signaturedefs=True,
        keep_shape_absolutely_input_names=inputs,
        non_verbose=True,
    )


def check(saved: str, npz: str) -> float:
    import tensorflow as tf

    data = np.load(npz)
    serve = tf.saved_model.load(saved).signatures["serving_default"]
    feeds = {k: tf.constant(data[k]) for k in data.files if k != "expected"}
    (out,) = serve(**feeds).values()
    return float(np.abs(out.numpy() - data["expected"]).max())


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "convert":
        convert(rest[0], rest[1], rest[2:])
        print("converted")
    else:
        print(json.dumps({"max_abs": check(rest[0], rest[1])}))
