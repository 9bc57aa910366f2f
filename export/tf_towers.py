"""The TensorFlow side of the tower export, run as one child process (never beside torch):

python -m export.tf_towers PLAN.json

PLAN.json lists the towers: {"name": {"onnx": MODEL.onnx, "out": SAVEDMODEL_DIR, "inputs": [INPUT_NAME...],
"check": INPUTS.npz}}. Each ONNX model goes through onnx2tf to a Keras model, is written as a SavedModel with a
`serving_default` signature, read back from disk and run on the npz's inputs; the child prints one JSON object,
the largest |TF - expected| per tower. One process for every tower, because importing TensorFlow and onnx2tf
costs more than a small tower's conversion; and onnx2tf's own save is skipped because it also converts to two
TFLite files that nothing here reads.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from learnkit.core.frameworks import prepare_tensorflow

prepare_tensorflow()


def convert(onnx_path: str, out_dir: str, inputs: list[str]) -> None:
    import onnx2tf
    import tensorflow as tf
    import tf_keras

    # keep_shape_absolutely_input_names: without it onnx2tf transposes the inputs and the outputs are wrong
    model = onnx2tf.convert(
        input_onnx_file_path=onnx_path,
        output_folder_path=out_dir,
        output_signaturedefs=True,
        keep_shape_absolutely_input_names=inputs,
        disable_model_save=True,
        non_verbose=True,
    )
    archive = tf_keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=lambda *tensors: model(tensors),
        input_signature=[tf.TensorSpec(t.shape, t.dtype, t.name) for t in model.inputs],
    )
    archive.write_out(out_dir)


def check(saved: str, npz: str) -> float:
    import tensorflow as tf

    data = np.load(npz)
    serve = tf.saved_model.load(saved).signatures["serving_default"]
    feeds = {k: tf.constant(data[k]) for k in data.files if k != "expected"}
    (out,) = serve(**feeds).values()
    return float(np.abs(out.numpy() - data["expected"]).max())


def run_plan(plan: dict[str, dict]) -> dict[str, float]:
    for tower in plan.values():
        convert(tower["onnx"], tower["out"], tower["inputs"])
    return {name: check(tower["out"], tower["check"]) for name, tower in plan.items()}


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as handle:
        print(json.dumps(run_plan(json.load(handle))))
