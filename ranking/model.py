"""The rankers (paper section 4.4, Fig. 5), as `tfrs.Model`s with `tfrs.tasks.Ranking` tasks.

- `baseline`: user-ID and item-ID embeddings plus the dataset's categorical user/item features -> main
  tower MLP -> conversion logit.
- `learn`: the baseline plus an auxiliary network: an MLP over the LEARN user and item embeddings (and
  their has_embedding flags) with its own CVR loss; its last hidden layer is the fusion embedding. The main
  tower reads the ID embeddings, the LEARN embeddings and the fusion embedding. Loss = main + lambda x aux.
- `inputs`: what a LEARN ranker reads of the LEARN features: the vectors (Fig. 5), their user . item score
  (the retrieval score the towers were trained on: an MLP learns a dot product of its inputs poorly), or both.
- `residual`: the LEARN branch added to the trained baseline's logit. The baseline's layers are copied in
  (`warm_start`) and the branch's last layer starts at zero, so the untrained model is the baseline exactly:
  training can only move it where the validation slice says it helps.

Every input is looked up inside the model from the raw `user_id` and `item_id`, so the SavedModel serves
raw ids. An id the model has not seen maps to an out-of-vocabulary embedding; an id missing from a LEARN
table gets that table's fallback vector with flag 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from ranking.config import RankingModelConfig
from ranking.tables import FeatureTable


@dataclass
class Vocabulary:
    """What the model knows by id: ids seen in training, and categorical attributes per user / item."""

    users: list[str]
    items: list[str]
    user_attributes: dict[str, dict[str, str]] = field(default_factory=dict)  # column -> user_id -> value
    item_attributes: dict[str, dict[str, str]] = field(default_factory=dict)  # column -> item_id -> value


class IdEmbedding(tf.keras.layers.Layer):
    """String id -> embedding; one extra row for ids outside the vocabulary."""

    def __init__(self, vocabulary: list[str], dim: int, name: str) -> None:
        super().__init__(name=name)
        self.lookup = tf.keras.layers.StringLookup(vocabulary=sorted(set(vocabulary)), num_oov_indices=1)
        self.embedding = tf.keras.layers.Embedding(len(set(vocabulary)) + 1, dim)

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        return self.embedding(self.lookup(ids))


class AttributeEmbedding(tf.keras.layers.Layer):
    """Id -> its categorical attribute (a hash table built from the data) -> embedding."""

    def __init__(self, values: dict[str, str], dim: int, name: str) -> None:
        super().__init__(name=name)
        keys = sorted(values)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(keys, tf.string), tf.constant([values[k] for k in keys], tf.string)
            ),
            default_value="",
        )
        self.embed = IdEmbedding(sorted(set(values.values())), dim, name=f"{name}_values")

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        return self.embed(self.table.lookup(ids))


class LearnLookup(tf.keras.layers.Layer):
    """Id -> (LEARN embedding, has_embedding flag) from an exported table; unknown ids get the fallback."""

    def __init__(self, table: FeatureTable, name: str) -> None:
        super().__init__(name=name)
        n = len(table.ids)
        self.index = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(table.ids, tf.string), tf.range(n, dtype=tf.int64)),
            default_value=n,
        )
        # the vectors are features, not weights: frozen, saved with the model, looked up by row
        self.vectors = tf.Variable(
            np.vstack([table.vectors, table.fallback[None]]).astype(np.float32), trainable=False, name="vectors"
        )
        self.flags = tf.Variable(np.r_[table.flags, 0.0].astype(np.float32), trainable=False, name="flags")

    def call(self, ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        row = self.index.lookup(ids)
        return tf.gather(self.vectors, row), tf.gather(self.flags, row)[:, None]


def mlp(widths: list[int], name: str) -> tf.keras.Sequential:
    return tf.keras.Sequential([tf.keras.layers.Dense(w, activation="relu") for w in widths], name=name)


def _task(name: str) -> tfrs.tasks.Ranking:
    # per-example losses: `compute_loss` averages them over the global batch, which keeps the gradient
    # right when a tf.distribute strategy sums the replicas' gradients
    return tfrs.tasks.Ranking(
        loss=tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction=tf.keras.losses.Reduction.NONE),
        metrics=[tf.keras.metrics.AUC(from_logits=True, name=f"{name}_auc")],
        name=name,
    )


# the layers a residual ranker shares with the baseline, copied from it by `warm_start`
SHARED = ("user_id", "item_id", "main_tower", "main_head")


class Ranker(tfrs.Model):
    def __init__(
        self,
        vocabulary: Vocabulary,
        config: RankingModelConfig,
        users: FeatureTable | None = None,
        items: FeatureTable | None = None,
        inputs: str = "vectors",
        residual: bool = False,
        learn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.config = config
        self.inputs, self.residual = inputs, residual
        self.user_id = IdEmbedding(vocabulary.users, config.id_dim, "user_id")
        self.item_id = IdEmbedding(vocabulary.items, config.id_dim, "item_id")
        self.user_attributes = [
            AttributeEmbedding(vocabulary.user_attributes[c], config.id_dim, f"user_{c}") for c in config.user_features
        ]
        self.item_attributes = [
            AttributeEmbedding(vocabulary.item_attributes[c], config.id_dim, f"item_{c}") for c in config.item_features
        ]
        self.uses_learn = users is not None and items is not None
        if self.uses_learn:
            assert users is not None and items is not None
            self.learn_users = LearnLookup(users, "learn_users")
            self.learn_items = LearnLookup(items, "learn_items")
            self.aux_tower = mlp(config.aux_tower, "aux_tower")
            self.aux_head = tf.keras.layers.Dense(1, name="aux_head")
            self.aux_task = _task("aux")
            self.learn_dropout = tf.keras.layers.Dropout(learn_dropout, name="learn_dropout")
            if residual:  # zero: the branch adds nothing until training finds that it helps
                self.branch_tower = mlp(config.main_tower, "branch_tower")
                self.branch_head = tf.keras.layers.Dense(1, kernel_initializer="zeros", name="branch_head")
        self.main_tower = mlp(config.main_tower, "main_tower")
        self.main_head = tf.keras.layers.Dense(1, name="main_head")
        self.task = _task("main")

    def learn_features(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """LEARN user and item embeddings with their flags: precomputed columns if the batch has them
        (in-memory input), else looked up by id in the exported tables."""
        if "user_learn" in features:
            user, user_flag = features["user_learn"], features["user_has_embedding"][:, None]
            item, item_flag = features["item_learn"], features["item_has_embedding"][:, None]
        else:
            user, user_flag = self.learn_users(features["user_id"])
            item, item_flag = self.learn_items(features["item_id"])
        parts = [user_flag, item_flag]
        if self.inputs in ("vectors", "both"):
            parts = [user, user_flag, item, item_flag]
        if self.inputs in ("similarity", "both"):
            parts.append(tf.reduce_sum(user * item, axis=1, keepdims=True))
        return tf.concat(parts, axis=1)

    def call(self, features: dict[str, tf.Tensor], training: bool = False) -> dict[str, tf.Tensor]:
        users, items = features["user_id"], features["item_id"]
        parts = [self.user_id(users), self.item_id(items)]
        parts += [layer(users) for layer in self.user_attributes] + [layer(items) for layer in self.item_attributes]
        out = {}
        if not self.uses_learn:
            out["logit"] = self.main_head(self.main_tower(tf.concat(parts, axis=1)))[:, 0]
            return out
        learn = self.learn_dropout(self.learn_features(features), training=training)
        fusion = self.aux_tower(learn)
        out["aux_logit"] = self.aux_head(fusion)[:, 0]
        if self.residual:  # the baseline's logit plus the branch's
            base = self.main_head(self.main_tower(tf.concat(parts, axis=1)))[:, 0]
            branch = self.branch_head(self.branch_tower(tf.concat([*parts, learn, fusion], axis=1)))[:, 0]
            out["logit"] = base + branch
        else:
            out["logit"] = self.main_head(self.main_tower(tf.concat([*parts, learn, fusion], axis=1)))[:, 0]
        return out

    def warm_start(self, baseline: Ranker, batch: dict[str, tf.Tensor]) -> None:
        """Copy the trained baseline's ID, attribute and main-tower weights into this residual ranker (both
        built by calling them on `batch`), so that it starts as the baseline."""
        self(batch)
        pairs = [(getattr(self, n), getattr(baseline, n)) for n in SHARED]
        pairs += list(zip(self.user_attributes, baseline.user_attributes, strict=True))
        pairs += list(zip(self.item_attributes, baseline.item_attributes, strict=True))
        for mine, theirs in pairs:
            mine.set_weights(theirs.get_weights())

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        labels = tf.cast(features["label"], tf.float32)[:, None]
        out = self(features, training=training)
        loss = tf.nn.compute_average_loss(self.task(labels, out["logit"][:, None]))
        if self.uses_learn:
            aux = tf.nn.compute_average_loss(self.aux_task(labels, out["aux_logit"][:, None]))
            loss += self.config.aux_weight * aux
        return loss

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="user_id"),
            tf.TensorSpec([None], tf.string, name="item_id"),
        ]
    )
    def serve(self, user_id: tf.Tensor, item_id: tf.Tensor) -> dict[str, tf.Tensor]:
        """The serving signature: raw ids in, conversion probability out."""
        return {"probability": tf.sigmoid(self({"user_id": user_id, "item_id": item_id})["logit"])}
