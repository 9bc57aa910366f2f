"""Training, scoring and saving the rankers: Adam, early stopping on the validation slice's AUC, fixed
seeds and deterministic ops, an optional tf.distribute strategy, and a SavedModel that serves raw ids."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from learnkit.core.fsutil import publish_folder
from ranking.config import RankingConfig
from ranking.model import Ranker, Vocabulary
from ranking.tables import FeatureTable

log = logging.getLogger(__name__)
MONITOR = "val_main_auc"


def set_determinism(seed: int) -> None:
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def strategy_for(name: str) -> tf.distribute.Strategy:
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":  # the cluster comes from TF_CONFIG; without it this is one worker
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def features_of(
    rows: pd.DataFrame, columns: dict[str, np.ndarray] | None = None, mask: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The model inputs of `rows`, plus precomputed `columns` (aligned with the whole frame the rows were
    selected from by `mask`): the point-in-time LEARN vectors, read as they are instead of looked up."""
    out = {
        "user_id": rows["user_id"].to_numpy(dtype=str).astype(object),
        "item_id": rows["item_id"].to_numpy(dtype=str).astype(object),
        "label": rows["label"].to_numpy(dtype=np.float32),
    }
    for name, values in (columns or {}).items():
        out[name] = values if mask is None else values[mask]
    return out


def dataset(features: dict[str, np.ndarray], batch_size: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices(features)
    if shuffle_seed is not None:
        ds = ds.shuffle(len(next(iter(features.values()))), seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


class KeepBest(tf.keras.callbacks.Callback):
    """Early stopping on the validation AUC that always ends with the best epoch's weights."""

    def __init__(self, patience: int) -> None:
        super().__init__()
        self.patience = patience
        self.best, self.best_epoch, self.weights, self.history = -np.inf, -1, None, []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        self.history.append(
            {
                "epoch": epoch + 1,
                **{k: round(float(v), 6) for k, v in logs.items() if k in ("loss", "main_auc", MONITOR, "val_loss")},
            }
        )
        value = float(logs.get(MONITOR, -np.inf))
        if value > self.best:
            self.best, self.best_epoch, self.weights = value, epoch, self.model.get_weights()
        elif epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.weights is not None:
            self.model.set_weights(self.weights)


@dataclass
class Trained:
    model: Ranker
    history: list[dict[str, Any]]
    best_epoch: int
    examples_per_s: float


def train_ranker(
    samples: pd.DataFrame,
    vocabulary: Vocabulary,
    config: RankingConfig,
    users: FeatureTable | None = None,
    items: FeatureTable | None = None,
    verbose: int = 2,
    similarity: bool = False,
    columns: dict[str, np.ndarray] | None = None,
) -> Trained:
    """Train one ranker (the LEARN ranker when both tables are given, reading their user . item score too
    with `similarity`) on the `train` rows, stopping early on the `valid` rows."""
    train_cfg = config.train
    set_determinism(train_cfg.seed)
    strategy = strategy_for(train_cfg.strategy)
    is_train, is_valid = (samples["part"] == "train").to_numpy(), (samples["part"] == "valid").to_numpy()
    train_rows, valid_rows = samples[is_train], samples[is_valid]
    global_batch = train_cfg.batch_size
    with strategy.scope():
        model = Ranker(vocabulary, config.model, users, items, similarity)
        model.compile(optimizer=tf.keras.optimizers.Adam(train_cfg.lr))
    learn = columns if users is not None else None
    train_ds = dataset(features_of(train_rows, learn, is_train), global_batch, shuffle_seed=train_cfg.seed)
    valid_ds = dataset(features_of(valid_rows, learn, is_valid), 4 * global_batch)
    keep = KeepBest(train_cfg.patience)
    started = time.perf_counter()
    model.fit(train_ds, validation_data=valid_ds, epochs=train_cfg.epochs, callbacks=[keep], verbose=verbose)
    elapsed = time.perf_counter() - started
    epochs = len(keep.history)
    return Trained(model, keep.history, keep.best_epoch + 1, len(train_rows) * epochs / elapsed)


def predict(
    model: Ranker, rows: pd.DataFrame, batch_size: int = 8192, columns: dict[str, np.ndarray] | None = None
) -> np.ndarray:
    """Probabilities of `rows`; LEARN vectors from `columns` (aligned with `rows`) when given, else looked
    up by id in the model's tables (as the SavedModel does)."""
    out = []
    for batch in dataset(features_of(rows, columns if model.uses_learn else None), batch_size):
        out.append(tf.sigmoid(model(batch)["logit"]).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def save_serving(model: Ranker, path: Path, check_rows: pd.DataFrame) -> float:
    """Save a SavedModel with the raw-id serving signature, reload it and return the largest difference
    between its probabilities and the trained model's on `check_rows`."""
    # tf-keras warns that a subclassed model has no get_config: irrelevant to a SavedModel, so kept quiet
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    if tmp.exists():
        tf.io.gfile.rmtree(str(tmp))
    tf.saved_model.save(model, str(tmp), signatures={"serving_default": model.serve})
    publish_folder(tmp, path)
    got = score_savedmodel(path, check_rows)
    return float(np.abs(got - predict(model, check_rows)).max()) if len(check_rows) else 0.0


def score_savedmodel(path: Path, rows: pd.DataFrame, batch_size: int = 8192) -> np.ndarray:
    """Probabilities of (user_id, item_id) rows from a saved ranker's raw-id serving signature."""
    served = tf.saved_model.load(str(path)).signatures["serving_default"]
    out = [
        served(
            user_id=tf.constant(rows["user_id"].to_numpy(dtype=str)[s : s + batch_size]),
            item_id=tf.constant(rows["item_id"].to_numpy(dtype=str)[s : s + batch_size]),
        )["probability"].numpy()
        for s in range(0, len(rows), batch_size)
    ]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)
