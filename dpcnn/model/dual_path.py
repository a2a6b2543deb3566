"""The dual-path model: image encoder, text encoder, one shared instance classifier, and the
training step of both stages (PAPER_SPEC §3-4).

Stage I batch (dict):  images [B, S, S, 3] float 0-255, tokens [B, L] int32, labels [B] int32.
Stage II batch (dict): anchor_images / negative_images [A, S, S, 3], anchor_labels /
    negative_labels [A], positive_tokens [A, L] (one caption of each anchor), pool_tokens [P, L]
    and pool_labels [P] (candidate texts; with ``mining="random"`` P = A and row i *is* the
    negative of anchor i).

Stage II step (PAPER_SPEC §4.2): anchors and candidates are encoded in inference mode (BN
running statistics, no dropout); each anchor's hardest candidate becomes its negative text;
then one training-mode forward/backward on the 2A images and 2A texts computes the ranking loss
on L2-normalised post-ReLU features and the instance loss on all of them.

Dropout uses stateless random numbers keyed by (seed, optimiser step, replica), so a resumed
run draws the same masks as an uninterrupted one.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from dpcnn import losses
from dpcnn.model.layers import PACKAGE, classifier_init, l2_normalize

STAGE1_KEYS = ("images", "tokens", "labels")
STAGE2_KEYS = (
    "anchor_images", "negative_images", "anchor_labels", "negative_labels",
    "positive_tokens", "pool_tokens", "pool_labels",
)


def stateless_dropout(x, rate: float, seed):
    """Inverted dropout with a stateless mask: x [..., D], seed int32 [2] → same shape."""
    if rate <= 0.0:
        return x
    keep = tf.random.stateless_uniform(tf.shape(x), seed=seed, dtype=tf.float32) >= rate
    return tf.where(keep, x / (1.0 - rate), tf.zeros_like(x))


@keras.saving.register_keras_serializable(package=PACKAGE)
class DualPath(keras.Model):
    """Image and text encoders plus the shared classifier, with the two-stage ``train_step``."""

    def __init__(
        self,
        image_encoder: keras.Model,
        text_encoder: keras.Model,
        num_classes: int,
        classifier_bias: bool = True,
        dropout: float = 0.5,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.num_classes = int(num_classes)
        self.classifier_bias = bool(classifier_bias)
        self.dropout_rate = float(dropout)
        self.seed = int(seed)
        # One Dense layer called on both branches: the official fcsharef/fcshareb (PAPER_SPEC §3.2).
        self.classifier = keras.layers.Dense(
            self.num_classes, use_bias=self.classifier_bias, kernel_initializer=classifier_init(),
            dtype="float32", name="classifier",
        )
        self._trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "rank_loss", "image_loss", "text_loss", "image_acc", "text_acc")
        }
        self.stage = 1
        self.loss_weights = (0.0, 1.0, 1.0)
        self.margin = 1.0
        self.mining = "hard"
        object.__setattr__(self, "train_variables", None)

    # -- features ------------------------------------------------------------------------------
    def image_features(self, images, training: bool = False):
        """Pre-ReLU ``fc1_1bn`` averaged over positions: [B, H, W, 3] → float32 [B, D] (1×1 at the crop)."""
        fmap = self.image_encoder(images, training=training)
        return ops.mean(ops.cast(fmap, "float32"), axis=(1, 2))

    def text_features(self, tokens, training: bool = False):
        """Pre-ReLU ``fc5_2bn``: [B, L] → float32 [B, D]."""
        return ops.cast(self.text_encoder(tokens, training=training), "float32")

    def call(self, inputs, training: bool = False):
        """{"images", "tokens"} → {"image_logits", "text_logits"} [B, C] (no dropout; for building and inspection)."""
        image_emb = ops.relu(self.image_features(inputs["images"], training=training))
        text_emb = ops.relu(self.text_features(inputs["tokens"], training=training))
        return {"image_logits": self.classifier(image_emb), "text_logits": self.classifier(text_emb)}

    # -- training ------------------------------------------------------------------------------
    def configure_stage(self, stage: int, train_variables: list, loss_weights, margin: float, mining: str) -> None:
        """Select the stage's step, variables and loss weights (rank, image, text). Call before compile()."""
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        if mining not in ("hard", "random"):
            raise ValueError(f"mining must be hard or random, got {mining}")
        self.stage = stage
        # Plain attribute, not tracked state: these variables already belong to the encoders.
        object.__setattr__(self, "train_variables", list(train_variables))
        self.loss_weights = tuple(float(w) for w in loss_weights)
        self.margin = float(margin)
        self.mining = mining

    @property
    def metrics(self):
        return list(self._trackers.values())

    def _dropout_seed(self, branch: int):
        step = tf.cast(self.optimizer.iterations, tf.int32)
        replica = tf.distribute.get_replica_context()
        replica_id = tf.cast(replica.replica_id_in_sync_group, tf.int32) if replica is not None else 0
        return tf.stack([tf.constant(self.seed, tf.int32) * 1000 + branch + 10 * replica_id, step])

    def _classify(self, embedding, branch: int):
        return self.classifier(stateless_dropout(embedding, self.dropout_rate, self._dropout_seed(branch)))

    def _apply_gradients(self, tape, scaled_loss):
        variables = self.train_variables if self.train_variables is not None else self.trainable_variables
        grads = tape.gradient(scaled_loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))

    def _mine(self, data):
        """Negative texts for the anchors: hardest of the pool in inference mode, or the pool row itself."""
        if self.mining == "random":
            return data["pool_tokens"], data["pool_labels"]
        anchors = l2_normalize(ops.relu(self.image_features(data["anchor_images"], training=False)))
        candidates = l2_normalize(ops.relu(self.text_features(data["pool_tokens"], training=False)))
        index = losses.hardest_negatives(anchors, candidates)
        return tf.gather(data["pool_tokens"], index), tf.gather(data["pool_labels"], index)

    def train_step(self, data):
        w_rank, w_img, w_txt = self.loss_weights
        if self.stage == 1:
            images, tokens, labels = data["images"], data["tokens"], data["labels"]
            image_labels = text_labels = labels
        else:
            negative_tokens, negative_text_labels = self._mine(data)
            negative_tokens = tf.stop_gradient(negative_tokens)
            images = tf.concat([data["anchor_images"], data["negative_images"]], axis=0)
            tokens = tf.concat([data["positive_tokens"], negative_tokens], axis=0)
            image_labels = tf.concat([data["anchor_labels"], data["negative_labels"]], axis=0)
            text_labels = tf.concat([data["anchor_labels"], negative_text_labels], axis=0)
        with tf.GradientTape() as tape:
            image_emb = ops.relu(self.image_features(images, training=True))
            text_emb = ops.relu(self.text_features(tokens, training=True))
            image_logits = self._classify(image_emb, 1)
            text_logits = self._classify(text_emb, 2)
            image_loss = losses.instance_loss(image_labels, image_logits)
            text_loss = losses.instance_loss(text_labels, text_logits)
            loss = w_img * image_loss + w_txt * text_loss
            if self.stage == 2:
                x = l2_normalize(image_emb)
                y = l2_normalize(text_emb)
                a = tf.shape(data["anchor_images"])[0]
                rank_loss = losses.ranking_loss(x[:a], y[:a], x[a:], y[a:], self.margin)
                loss = loss + w_rank * rank_loss
            else:
                rank_loss = tf.constant(0.0)
            scaled = self.optimizer.scale_loss(_scale_for_replicas(loss))
        self._apply_gradients(tape, scaled)
        values = {
            "loss": loss, "rank_loss": rank_loss, "image_loss": image_loss, "text_loss": text_loss,
            "image_acc": losses.instance_accuracy(image_labels, image_logits),
            "text_acc": losses.instance_accuracy(text_labels, text_logits),
        }
        for name, value in values.items():
            self._trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    # -- serialisation -------------------------------------------------------------------------
    def get_config(self):
        return {
            **super().get_config(),
            "image_encoder": keras.saving.serialize_keras_object(self.image_encoder),
            "text_encoder": keras.saving.serialize_keras_object(self.text_encoder),
            "num_classes": self.num_classes,
            "classifier_bias": self.classifier_bias,
            "dropout": self.dropout_rate,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["image_encoder"] = keras.saving.deserialize_keras_object(config["image_encoder"], custom_objects=custom_objects)
        config["text_encoder"] = keras.saving.deserialize_keras_object(config["text_encoder"], custom_objects=custom_objects)
        return cls(**config)


def _scale_for_replicas(loss):
    """Divide by the number of replicas: gradients are summed across replicas by apply_gradients."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / float(replicas) if replicas > 1 else loss
