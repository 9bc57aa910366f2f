"""Training, scoring and saving the rankers: Adam, early stopping on the validation slice's AUC, fixed
seeds and deterministic ops, an optional tf.distribute strategy, and a SavedModel that serves raw ids."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
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
SCORE = "val_uauc"  # a warm-started ranker's early-stopping figure, computed on the validation slice


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
    """Early stopping that always ends with the best epoch's weights: on the validation AUC, or on `score`
    (the model -> a validation figure, higher better), which also scores the untrained start as epoch 0, so that
    a warm-started ranker never ends below where it began."""

    def __init__(self, patience: int, score: Callable[[Ranker], float] | None = None) -> None:
        super().__init__()
        self.patience, self.score = patience, score
        self.best, self.best_epoch, self.weights, self.history = -np.inf, -1, None, []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.score is not None:
            self._consider(-1, {SCORE: self.score(self.model)})

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        if self.score is not None:
            logs[SCORE] = self.score(self.model)
        if not self._consider(epoch, logs) and epoch - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def _consider(self, epoch: int, logs: dict[str, Any]) -> bool:
        kept = ("loss", "main_auc", MONITOR, "val_loss", SCORE)
        self.history.append({"epoch": epoch + 1, **{k: round(float(v), 6) for k, v in logs.items() if k in kept}})
        value = float(logs.get(SCORE if self.score is not None else MONITOR, -np.inf))
        if value > self.best:
            self.best, self.best_epoch, self.weights = value, epoch, self.model.get_weights()
            return True
        return False

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.weights is not None:
            self.model.set_weights(self.weights)


@dataclass
class Trained:
    model: Ranker
    history: list[dict[str, Any]]
    best_epoch: int  # 0: the untrained start (a residual ranker that never beat the baseline)
    examples_per_s: float

    @property
    def epochs_run(self) -> int:
        """Epochs trained (the untrained start a residual ranker scores is no epoch)."""
        return sum(1 for h in self.history if h["epoch"] > 0)


def train_ranker(
    samples: pd.DataFrame,
    vocabulary: Vocabulary,
    config: RankingConfig,
    users: FeatureTable | None = None,
    items: FeatureTable | None = None,
    verbose: int = 2,
    columns: dict[str, np.ndarray] | None = None,
    candidate: str | None = None,
    seed: int | None = None,
    baseline: Ranker | None = None,
    valid_score: Callable[[np.ndarray], float] | None = None,
) -> Trained:
    """Train one ranker on the `train` rows, stopping early on the `valid` rows: the ID baseline when
    `candidate` is None, else that candidate of `config.candidates` (reading the LEARN tables when both are
    given). A residual candidate starts from `baseline`'s weights and stops on `valid_score` (validation
    probabilities -> a figure, higher better), its untrained start included."""
    train_cfg = config.train
    seed = train_cfg.seed if seed is None else seed
    set_determinism(seed)
    strategy = strategy_for(train_cfg.strategy)
    is_train, is_valid = (samples["part"] == "train").to_numpy(), (samples["part"] == "valid").to_numpy()
    train_rows, valid_rows = samples[is_train], samples[is_valid]
    global_batch = train_cfg.batch_size
    choice = config.candidates[candidate] if candidate is not None else None
    uses_learn = choice is not None and choice.inputs != "none" and users is not None and items is not None
    with strategy.scope():
        model = Ranker(
            vocabulary,
            config.candidate_model(candidate) if candidate is not None else config.model,
            users if uses_learn else None,
            items if uses_learn else None,
            inputs=choice.inputs if choice is not None else "none",
            residual=bool(choice and choice.residual),
            learn_dropout=choice.learn_dropout if choice is not None else 0.0,
        )
        model.compile(optimizer=tf.keras.optimizers.Adam(train_cfg.lr))
    learn = columns if uses_learn else None
    train_ds = dataset(features_of(train_rows, learn, is_train), global_batch, shuffle_seed=seed)
    valid_ds = dataset(features_of(valid_rows, learn, is_valid), 4 * global_batch)
    score = None
    if choice is not None and choice.residual:
        if baseline is None or valid_score is None:
            raise ValueError(f"candidate {candidate!r} is residual: it needs the trained baseline and a valid_score")
        model.warm_start(baseline, next(iter(valid_ds)))
        valid_columns = {k: v[is_valid] for k, v in (learn or {}).items()}
        score = lambda m: valid_score(predict(m, valid_rows, columns=valid_columns))  # noqa: E731
    keep = KeepBest(train_cfg.patience, score)
    started = time.perf_counter()
    model.fit(train_ds, validation_data=valid_ds, epochs=train_cfg.epochs, callbacks=[keep], verbose=verbose)
    elapsed = time.perf_counter() - started
    trained = Trained(model, keep.history, keep.best_epoch + 1, 0.0)
    trained.examples_per_s = len(train_rows) * trained.epochs_run / elapsed
    return trained


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
