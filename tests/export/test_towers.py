"""The towers as ONNX and TensorFlow SavedModels: parity with PyTorch, dynamic history length, the TF
item tower embedding a brand-new item in a process without torch, and refusals."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from export.towers import ItemTower, UserTower, export_towers, onnx_outputs
from learn_embed.config import PchConfig
from learn_embed.pch import LearnModel
from learnkit.core.errors import DataError

DIM, ITEMS = 24, 60


def model(**overrides):
    torch.manual_seed(0)
    content = torch.randn(ITEMS, DIM) * 3 + 1  # not standardised: the towers must do it
    config = PchConfig(width=16, layers=1, heads=2, out_dim=8, max_len=32, dropout=0.0, **overrides)
    return LearnModel(config, ITEMS, content).eval(), content


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    learn, content = model()
    g = torch.Generator().manual_seed(1)
    histories = [
        torch.randint(0, ITEMS, (int(n),), generator=g).tolist() for n in torch.randint(1, 12, (20,), generator=g)
    ]
    folder = tmp_path_factory.mktemp("towers")
    beside = []  # what `meanwhile` saw: the TensorFlow child converting at that moment
    parity = export_towers(learn, content, histories, folder, length=12, meanwhile=lambda: beside.append(_converting()))
    return learn, content, folder, parity, beside


def _converting() -> bool:
    """Whether a process of this user is running `export.tf_towers` now."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"export.tf_towers" in cmdline.read_bytes():
                return True
        except OSError:  # the process ended while we looked
            continue
    return False


def test_onnx_and_tensorflow_towers_match_pytorch(exported):
    _, _, folder, parity, beside = exported
    assert beside == [True]  # the caller's work ran once, while the TensorFlow conversion did
    assert max(parity.onnx_user, parity.onnx_item, parity.tf_user, parity.tf_item) < 1e-5
    assert sorted(p.name for p in folder.iterdir()) == ["item.onnx", "item_tf", "user.onnx", "user_tf"]
    assert not list(folder.rglob("*.tflite"))


def test_onnx_user_tower_takes_any_history_length(exported):
    learn, content, folder, *_ = exported
    for length in (3, 30):
        history = torch.arange(length) % ITEMS
        with torch.no_grad():
            want = learn.user_embeddings(history[None])[0, -1].numpy()
        got = onnx_outputs(
            folder / "user.onnx", {"content": content[history][None].numpy(), "mask": np.ones((1, length), np.float32)}
        )[0]
        assert np.abs(got - want).max() < 1e-5


def test_tf_item_tower_embeds_a_new_item_without_torch(exported):
    _, content, folder, *_ = exported
    new_item = torch.randn(1, DIM) * 3 + 1
    with torch.no_grad():
        want = ItemTower(exported[0], content)(new_item).numpy()
    script = (
        "import sys, numpy as np, tensorflow as tf;"
        "s = tf.saved_model.load(sys.argv[1]).signatures['serving_default'];"
        "(out,) = s(content=tf.constant(np.array([[float(x) for x in sys.argv[2].split(',')]], np.float32))).values();"
        "print(','.join(repr(float(v)) for v in out.numpy()[0])); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(folder / "item_tf"), ",".join(map(str, new_item[0].tolist()))],
        capture_output=True,
        text=True,
        check=True,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": ""},
    ).stdout.split()
    assert np.abs(np.array([float(v) for v in out[0].split(",")]) - want[0]).max() < 1e-5 and out[1] == "False"


def test_variant3_item_tower_is_the_standardised_content_and_id_models_have_no_towers():
    learn, content = model(item_tower="variant3")
    with torch.no_grad():
        got = ItemTower(learn, content)(content[:4])
    standardised = (content - content.mean(0)) / content.std(0)
    assert torch.allclose(got, torch.nn.functional.normalize(standardised[:4], dim=-1), atol=1e-5)
    assert torch.allclose(got, learn.item_embeddings(torch.arange(4)), atol=1e-5)  # as the model scores
    torch.manual_seed(0)
    id_model = LearnModel(PchConfig(width=16, layers=1, heads=2, out_dim=8, input="id"), ITEMS, None)
    with pytest.raises(DataError, match="only a method with content input has towers"):
        UserTower(id_model, content)
