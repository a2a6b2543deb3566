"""The two training stages as objects: each owns its step, its loss weights and the variables it trains.

- :class:`InstanceStage` (stage I, PAPER_SPEC §3): the instance loss on both branches, weights
  ``train.stage1_loss_weights`` (rank : image : text = 0 : 1 : 1).
  Batch: {"images" [B, S, S, 3] float 0-255, "tokens" [B, L] int32, "labels" [B] int32}.
- :class:`RankingStage` (stage II, PAPER_SPEC §4; ``train.stage2_objective`` may swap its ranking
  term for VSE++'s or CLIP's, see the class): negatives from :func:`dpcnn.training.mining.mine`
  (inference mode, no gradient), then one training-mode forward/backward on the 2A images and 2A
  texts: the ranking loss on the L2-normalised post-ReLU features of the first A (anchors,
  positives) against the second A (negative images, mined texts), plus the instance loss on all.
  Batch: {"anchor_images", "negative_images" [A, S, S, 3], "anchor_labels", "negative_labels" [A],
  "positive_tokens" [A, L], "pool_tokens" [P, L], "pool_labels" [P]}.

A stage wraps a pure :class:`~dpcnn.model.dual_path.DualPath` (its weights are the model's) and is
what ``fit`` runs. :func:`compile_stage` is the one set-up used by the trainer, the benchmarks,
the tests and the notebooks: backbone BN mode, the multiplier table, the optimiser, the step.

Dropout uses stateless masks keyed by (seed, optimiser step, replica, branch), so a resumed run
draws the masks an uninterrupted one draws.
"""

from __future__ import annotations

import logging
import types

import keras
import numpy as np
import tensorflow as tf

from dpcnn import compat, losses
from dpcnn.training import mining
from dpcnn.training.multipliers import configure_backbone_bn, parameter_groups
from dpcnn.training.optimizer import make_optimizer

log = logging.getLogger(__name__)

METRICS = ("loss", "rank_loss", "image_loss", "text_loss", "image_acc", "text_acc")


class Stage(keras.Model):
    """A DualPath with one stage's training step (see the subclasses)."""

    number = 0

    def __init__(self, model, loss_weights, seed: int = 0, margin: float = 1.0, mining_mode: str = "hard", **kwargs):
        super().__init__(name=f"stage{self.number}", **kwargs)
        self.dual_path = model
        self.loss_weights = tuple(float(w) for w in loss_weights)
        self.seed = int(seed)
        self.margin = float(margin)
        self.mining_mode = mining_mode
        self._trackers = {name: keras.metrics.Mean(name=name) for name in METRICS}
        self._untracked = types.SimpleNamespace(train_variables=[])  # the model's variables, outside Keras' tracking
        self.built = True

    @property
    def metrics(self):
        return list(self._trackers.values())

    def call(self, inputs, training: bool = False):
        return self.dual_path(inputs, training=training)

    _maybe_symbolic_build = compat.skip_symbolic_build  # dpcnn.compat, entry 1

    @property
    def train_variables(self) -> list:
        """The variables this stage trains (set by :func:`compile_stage`); the model owns them."""
        return self._untracked.train_variables

    def dropout_seed(self, branch: int):
        """int32 [2]: (seed, branch, replica) and the optimiser step."""
        step = tf.cast(self.optimizer.iterations, tf.int32)
        replica = tf.distribute.get_replica_context()
        replica_id = tf.cast(replica.replica_id_in_sync_group, tf.int32) if replica is not None else 0
        return tf.stack([tf.constant(self.seed, tf.int32) * 1000 + branch + 10 * replica_id, step])

    def forward(self, images, tokens, image_labels, text_labels):
        """Training-mode embeddings, logits (with dropout) and the weighted instance losses."""
        m = self.dual_path
        image_emb = m.image_embedding(images, training=True)
        text_emb = m.text_embedding(tokens, training=True)
        image_logits, text_logits = m.logits_pair(image_emb, text_emb, self.dropout_seed(1), self.dropout_seed(2))
        values = {
            "image_loss": losses.instance_loss(image_labels, image_logits),
            "text_loss": losses.instance_loss(text_labels, text_logits),
            "image_acc": losses.instance_accuracy(image_labels, image_logits),
            "text_acc": losses.instance_accuracy(text_labels, text_logits),
        }
        _, w_img, w_txt = self.loss_weights
        return image_emb, text_emb, values, w_img * values["image_loss"] + w_txt * values["text_loss"]

    def scaled(self, loss):
        """The loss to differentiate (inside the tape): divided by the replicas, whose gradients are
        summed, and scaled for mixed precision."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return self.optimizer.scale_loss(loss / float(replicas) if replicas > 1 else loss)

    def update(self, tape, scaled, loss, values):
        """The optimiser step on the stage's variables, then the epoch means of the step's values."""
        grads = tape.gradient(scaled, self.train_variables)
        self.optimizer.apply_gradients(zip(grads, self.train_variables))
        for name, value in {**values, "loss": loss}.items():
            self._trackers[name].update_state(value)
        results = {name: tracker.result() for name, tracker in self._trackers.items()}
        strategy = tf.distribute.get_strategy()
        if compat.multi_worker_collective(strategy):
            # Keras reduces a multi-worker step's logs with reduce("MEAN", axis=0): give them that axis.
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results


class InstanceStage(Stage):
    """Stage I: the instance loss of both branches through the shared classifier."""

    number = 1

    def train_step(self, data):
        with tf.GradientTape() as tape:
            _, _, values, loss = self.forward(data["images"], data["tokens"], data["labels"], data["labels"])
            values["rank_loss"] = tf.constant(0.0)
            scaled = self.scaled(loss)
        return self.update(tape, scaled, loss, values)


class RankingStage(Stage):
    """Stage II: ranking loss with mined negative texts plus the instance loss.

    ``objective`` (``train.stage2_objective``) chooses the cross-modal term: ``ranking`` (the
    paper, on the anchors against their mined negatives), or ``vsepp`` / ``infonce`` on the A
    anchor pairs of the batch (their in-batch negatives, pairs of one class excluded); the mined
    texts and the negative images then serve the instance loss only. ``infonce`` adds one trained
    variable, the log of the logit scale, saved with the stage's backups.
    """

    number = 2

    def __init__(self, model, loss_weights, objective: str = "ranking", temperature: float = 0.07, **kwargs):
        super().__init__(model, loss_weights, **kwargs)
        self.objective = objective
        self.log_logit_scale = None
        if objective == "infonce":
            self.log_logit_scale = self.add_weight(
                shape=(), name="log_logit_scale", dtype="float32",
                initializer=keras.initializers.Constant(float(np.log(1.0 / temperature))))

    @property
    def objective_variables(self) -> list:
        """Variables of the objective itself (multiplier ``train.infonce_scale_multiplier``, no weight decay)."""
        return [self.log_logit_scale] if self.log_logit_scale is not None else []

    def cross_modal_loss(self, x, y, labels, a):
        """The objective's term on ranking features x, y [2A, D] (anchors first) and labels [2A]."""
        if self.objective == "vsepp":
            return losses.vsepp_loss(x[:a], y[:a], self.margin, labels[:a])
        if self.objective == "infonce":
            return losses.infonce_loss(x[:a], y[:a], self.log_logit_scale, labels[:a])
        return losses.ranking_loss(x[:a], y[:a], x[a:], y[a:], self.margin)

    def train_step(self, data):
        negative_tokens, negative_labels = mining.mine(
            self.dual_path, data["anchor_images"], data["pool_tokens"], data["pool_labels"], self.mining_mode)
        images = tf.concat([data["anchor_images"], data["negative_images"]], axis=0)
        tokens = tf.concat([data["positive_tokens"], negative_tokens], axis=0)
        image_labels = tf.concat([data["anchor_labels"], data["negative_labels"]], axis=0)
        text_labels = tf.concat([data["anchor_labels"], negative_labels], axis=0)
        a = tf.shape(data["anchor_images"])[0]
        with tf.GradientTape() as tape:
            image_emb, text_emb, values, loss = self.forward(images, tokens, image_labels, text_labels)
            x = self.dual_path.ranking_features(image_emb)
            y = self.dual_path.ranking_features(text_emb)
            values["rank_loss"] = self.cross_modal_loss(x, y, image_labels, a)
            loss = loss + self.loss_weights[0] * values["rank_loss"]
            scaled = self.scaled(loss)
        return self.update(tape, scaled, loss, values)


def jit_compile(setting: str) -> bool:
    """``train.jit_compile``: true | false | auto (XLA where an accelerator is present)."""
    if setting == "auto":
        return bool(tf.config.list_physical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    return setting == "true"


def compile_stage(model, cfg, stage: int, steps_per_epoch: int) -> Stage:
    """``model`` (a DualPath) set up for ``stage`` and compiled: the stage object ``fit`` runs.

    Backbone BN mode, the stage's multiplier table (PAPER_SPEC §5), the official SGD with the
    stage's piecewise schedule (built over the trained variables only), the step.
    """
    t = cfg.train
    rules = t.stage1_multipliers if stage == 1 else t.stage2_multipliers
    backbone = configure_backbone_bn(model, rules, cfg, stage)
    groups = parameter_groups(model, rules, cfg.model.image_backbone)
    if stage == 1:
        task = InstanceStage(model, t.stage1_loss_weights, seed=t.seed)
    else:
        task = RankingStage(model, t.stage2_loss_weights, objective=t.stage2_objective,
                            temperature=t.infonce_temperature, seed=t.seed, margin=t.margin,
                            mining_mode=t.negative_mining)
    schedule = t.stage1_schedule if stage == 1 else t.stage2_schedule
    extra = task.objective_variables if stage == 2 and t.infonce_scale_multiplier > 0 else []
    optimizer = make_optimizer(groups, t, schedule, steps_per_epoch)
    optimizer.multipliers.update({v.path: (t.infonce_scale_multiplier, 0.0) for v in extra})
    task.compile(optimizer=optimizer, jit_compile=jit_compile(t.jit_compile))
    task._untracked.train_variables = [g.variable for g in groups] + extra
    task.optimizer.build(task.train_variables)
    log.info("stage %d: backbone %s; %d trained tensors (%d parameters)", stage, backbone, len(groups),
             sum(int(np.prod(g.variable.shape)) for g in groups))
    return task
