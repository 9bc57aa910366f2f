"""The TFRS rankers on a small synthetic world whose labels only the LEARN embeddings reveal: feature
tables read through tf.data, lookups with fallback, the loss, determinism, a distribution strategy, and
a SavedModel that serves raw ids in a process without torch."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

tf = pytest.importorskip("tensorflow")

from eval.metrics import auc  # noqa: E402
from export.tables import EmbeddingTable, read_table, write_export  # noqa: E402
from learnkit.core.errors import DataError  # noqa: E402
from ranking.config import RankingConfig, RankingModelConfig, RankingTrainConfig  # noqa: E402
from ranking.model import Ranker, Vocabulary  # noqa: E402
from ranking.tables import read_feature_table  # noqa: E402
from ranking.train import features_of, predict, save_serving, train_ranker  # noqa: E402

DIM = 8


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    rng = np.random.default_rng(0)
    users = [f"u{k}" for k in range(300)]
    items = [f"i{k}" for k in range(30)]
    user_vectors = rng.standard_normal((300, DIM)).astype(np.float32)
    item_vectors = rng.standard_normal((30, DIM)).astype(np.float32)
    flags = np.ones(300, bool)
    flags[-10:] = False  # ten users without history: fallback rows
    user_vectors[~flags] = user_vectors[flags].mean(0)
    root = tmp_path_factory.mktemp("export")
    write_export(
        root,
        {
            "users": EmbeddingTable(users, user_vectors, flags, user_vectors[flags].mean(0)),
            "items": EmbeddingTable(items, item_vectors, np.ones(30, bool), item_vectors.mean(0)),
        },
        {"snapshot_ts": 0},
        rows_per_part=128,
        version="v1",
        formats=("parquet", "tfrecord"),
    )
    pairs = [(u, i) for u in range(300) for i in rng.choice(30, 12, replace=False)]
    u_idx, i_idx = np.array(pairs).T
    label = ((user_vectors[u_idx] * item_vectors[i_idx]).sum(1) > 0).astype(np.int8)
    part = np.where(u_idx >= 200, "test", np.where(u_idx >= 170, "valid", "train"))
    samples = pd.DataFrame(
        {"user_id": np.array(users)[u_idx], "item_id": np.array(items)[i_idx], "label": label, "part": part}
    )
    vocabulary = Vocabulary(users=users[:200], items=items)
    return root, samples, vocabulary


def config(epochs=8, strategy="none"):
    return RankingConfig(
        model=RankingModelConfig(id_dim=8, main_tower=[32], aux_tower=[32, 16]),
        train=RankingTrainConfig(epochs=epochs, batch_size=128, lr=0.01, patience=3, strategy=strategy),
    )


def test_tables_through_tf_data_match_the_verified_parquet(world):
    root = world[0]
    reference, _ = read_table(root, "users")
    for fmt in ("tfrecord", "parquet"):
        table = read_feature_table(root, "users", fmt)
        assert [i.decode() for i in table.ids] == reference.ids
        assert np.array_equal(table.vectors, reference.embeddings)
        assert table.flags.tolist() == reference.has_embedding.astype(float).tolist()
    with pytest.raises(DataError, match="has dimension 8, expected 16"):
        read_feature_table(root, "users", "tfrecord", expect_dim=16)


def test_a_changed_tfrecord_is_refused(world, tmp_path):
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(world[0], copy)
    part = copy / "v1" / "tfrecord" / "users" / "part-00001.tfrecord"
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(DataError, match="part-00001.tfrecord: sha256 does not match"):
        read_feature_table(copy, "users", "tfrecord")


def test_lookup_gives_the_fallback_and_flag_zero_to_unknown_ids(world):
    root, _, vocabulary = world
    users, items = read_feature_table(root, "users"), read_feature_table(root, "items")
    model = Ranker(vocabulary, config().model, users, items)
    vectors, flags = model.learn_users(tf.constant(["u3", "u299", "nobody"]))
    assert np.array_equal(vectors.numpy()[0], users.vectors[3])
    assert flags.numpy()[:, 0].tolist() == [1.0, 0.0, 0.0]  # u299 has no history; "nobody" is not in the table
    assert np.allclose(vectors.numpy()[2], users.fallback) and np.allclose(vectors.numpy()[1], users.fallback)


def test_loss_is_main_plus_lambda_times_auxiliary(world):
    root, samples, vocabulary = world
    users, items = read_feature_table(root, "users"), read_feature_table(root, "items")
    model = Ranker(vocabulary, config().model, users, items)
    batch = {k: tf.constant(v) for k, v in features_of(samples.head(64)).items()}
    out = model(batch)
    bce = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    labels = batch["label"][:, None]
    expected = bce(labels, out["logit"][:, None]) + 0.5 * bce(labels, out["aux_logit"][:, None])
    assert abs(float(model.compute_loss(batch)) - float(expected)) < 1e-6


def test_learn_features_carry_what_ids_cannot_and_training_is_deterministic(world):
    root, samples, vocabulary = world
    users, items = read_feature_table(root, "users"), read_feature_table(root, "items")
    test = samples[samples.part == "test"]
    learn = train_ranker(samples, vocabulary, config(), users, items, verbose=0, candidate="fig5")
    baseline = train_ranker(samples, vocabulary, config(), verbose=0)
    learn_auc, base_auc = (
        auc(test.label.to_numpy(), predict(learn.model, test)),
        auc(test.label.to_numpy(), predict(baseline.model, test)),
    )
    # test users are new to the ID model; their LEARN embeddings say what they like
    assert learn_auc > 0.75 and base_auc < 0.65, (learn_auc, base_auc)
    assert 1 <= learn.best_epoch <= len(learn.history) and "val_main_auc" in learn.history[0]
    again = train_ranker(samples, vocabulary, config(), users, items, verbose=0, candidate="fig5")
    assert np.array_equal(predict(again.model, test), predict(learn.model, test))


def test_a_residual_ranker_starts_as_the_baseline_and_never_ends_below_it_on_validation(world):
    """The integration that cannot lose by construction: the baseline's weights copied in and the branch's
    last layer at zero give the baseline's exact scores before training; early stopping on validation UAUC
    counts that start, so the kept model's validation UAUC is at least the baseline's."""
    from eval.metrics import user_auc

    root, samples, vocabulary = world
    users, items = read_feature_table(root, "users"), read_feature_table(root, "items")
    valid, test = samples[samples.part == "valid"], samples[samples.part == "test"]

    def score(probabilities):
        return user_auc(valid.user_id.to_numpy(), valid.label.to_numpy(), probabilities).uauc

    baseline = train_ranker(samples, vocabulary, config(), verbose=0)
    start = Ranker(vocabulary, config().model, users, items, inputs="both", residual=True)
    start.warm_start(baseline.model, {k: tf.constant(v) for k, v in features_of(valid.head(8)).items()})
    assert np.abs(predict(start, test) - predict(baseline.model, test)).max() < 1e-6
    residual = train_ranker(
        samples, vocabulary, config(), users, items, verbose=0, candidate="residual", baseline=baseline.model,
        valid_score=score,
    )  # fmt: skip
    assert residual.history[0]["epoch"] == 0 and residual.history[0]["val_uauc"] == round(
        score(predict(baseline.model, valid)), 6
    )
    assert score(predict(residual.model, valid)) >= score(predict(baseline.model, valid))
    # here the LEARN vectors carry what the IDs cannot: the branch learns to use them
    labels = test.label.to_numpy()
    assert auc(labels, predict(residual.model, test)) > auc(labels, predict(baseline.model, test)) + 0.1
    with pytest.raises(ValueError, match="is residual: it needs the trained baseline"):
        train_ranker(samples, vocabulary, config(), users, items, verbose=0, candidate="residual")


def test_mirrored_strategy_trains_the_same_model(world):
    root, samples, vocabulary = world
    users, items = read_feature_table(root, "users"), read_feature_table(root, "items")
    test = samples[samples.part == "test"]
    plain = train_ranker(samples, vocabulary, config(epochs=2), users, items, verbose=0, candidate="fig5")
    mirrored = train_ranker(
        samples, vocabulary, config(epochs=2, strategy="mirrored"), users, items, verbose=0, candidate="fig5"
    )
    assert np.abs(predict(plain.model, test) - predict(mirrored.model, test)).max() < 1e-4


def test_savedmodel_serves_raw_ids_without_torch(world, tmp_path):
    root, samples, vocabulary = world
    users, items = read_feature_table(root, "users"), read_feature_table(root, "items")
    trained = train_ranker(samples, vocabulary, config(epochs=1), users, items, verbose=0, candidate="fig5")
    rows = pd.DataFrame(
        {"user_id": ["u1", "u250", "stranger"], "item_id": ["i3", "i4", "new-item"], "label": [0, 0, 0]}
    )
    diff = save_serving(trained.model, tmp_path / "ranker", rows)
    assert diff < 1e-6
    script = (
        "import sys, tensorflow as tf; m = tf.saved_model.load(sys.argv[1]);"
        "p = m.signatures['serving_default'](user_id=tf.constant(['u1', 'u250', 'stranger']),"
        "item_id=tf.constant(['i3', 'i4', 'new-item']))['probability'].numpy();"
        "print(' '.join(repr(float(x)) for x in p)); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "ranker")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    ).stdout.split("\n")
    served = np.array([float(x) for x in out[0].split()])
    assert np.abs(served - predict(trained.model, rows)).max() < 1e-6 and out[1] == "False"
