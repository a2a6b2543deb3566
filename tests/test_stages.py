"""The wiring of the paper inside the two training steps (PAPER_SPEC §3-4), pinned detail by detail.

Every expected value is recomputed here from the encoders and the classifier called directly
(``reference_*``), never through the stage's own step, on a tiny model with distinctive BN
running statistics (so that inference and training mode differ) and no data files. Each test
names the detail it pins; ``make mutants`` (tools/mutants.py) checks that changing that detail
alone makes it fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from helpers import dual_path, random_batches

from dpcnn.config import apply_overrides
from dpcnn.presets import preset

A, P, L, V, DIM, C, SIZE = 4, 6, 8, 20, 8, 12, 28


def tiny_cfg(*overrides):
    base = ["train.stage1_schedule=1:0.5", "train.stage2_schedule=1:0.5", "train.momentum=0", "train.nesterov=false",
            "train.weight_decay=0", "data.max_len=8", "model.dropout=0.4", "train.margin=0.7", "train.batch_size=8", "train.negative_pool=6"]
    return apply_overrides(preset("tiny"), [*base, *overrides])


def build(cfg, seed=3):
    """The tiny DualPath of these tests, with distinctive BN running statistics."""
    return dual_path(cfg, C, V, DIM, seed=seed, bn_statistics=True)


def stage2_batch(seed=0):
    return random_batches(seed, A, P, SIZE, L, V)[1]


def stage1_batch(seed=0):
    return random_batches(seed, A, P, SIZE, L, V)[0]


# -- the reference computation, from the encoders and the classifier called directly ----------


def embed_image(model, images, training):
    return tf.reduce_mean(tf.cast(model.image_encoder(images, training=training), tf.float32), axis=(1, 2))


def embed_text(model, tokens, training):
    return tf.cast(model.text_encoder(tokens, training=training), tf.float32)


def unit(x):
    x = tf.nn.relu(x)
    return x / tf.sqrt(1e-8 + tf.reduce_sum(x * x, axis=1, keepdims=True))


def dropout(x, rate, seed_value, branch, step):
    keep = tf.random.stateless_uniform(tf.shape(x), seed=[seed_value * 1000 + branch, step]) >= rate
    return tf.where(keep, x / (1 - rate), 0.0)


def cross_entropy(labels, logits):
    return float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)))


def logits(model, emb, cfg, branch, step=0):
    x = dropout(tf.nn.relu(emb), cfg.model.dropout, cfg.train.seed, branch, step)
    w = model.classifier.kernel
    return x @ w + (model.classifier.bias if model.classifier.use_bias else 0)


def hinge(xp, yp, xn, yn, margin):
    """The official RankLoss (PAPER_SPEC §4.1), summed over the anchors, divided by the batch 2A."""
    s = lambda a, b: tf.reduce_sum(a * b, axis=1)  # noqa: E731
    l1 = tf.nn.relu(margin - (s(xp, yp) - s(xp, yn)))
    l2 = tf.nn.relu(margin - (s(xp, yp) - s(yp, xn)))
    return tf.reduce_sum(l1 + l2) / (2 * xp.shape[0])


def reference_mining(model, batch):
    """Hardest candidate by cosine of the inference-mode ranking features (PAPER_SPEC §4.2 step 5)."""
    anchors = unit(embed_image(model, batch["anchor_images"], False)).numpy()
    pool = unit(embed_text(model, batch["pool_tokens"], False)).numpy()
    return np.argmax(anchors @ pool.T, axis=1)


def reference_stage2(model, cfg, batch):
    """One stage-II step recomputed: (values, the total loss inside a tape, the tape, alternatives).

    The alternatives are what a wrong wiring would give on the same model state: the text loss
    with the negative *images'* labels, the ranking loss on post-dropout features, and the
    ranking loss with the negative images mined as well.
    """
    hard = reference_mining(model, batch)
    images = np.concatenate([batch["anchor_images"], batch["negative_images"]])
    tokens = np.concatenate([batch["positive_tokens"], batch["pool_tokens"][hard]])
    image_labels = np.concatenate([batch["anchor_labels"], batch["negative_labels"]])
    text_labels = np.concatenate([batch["anchor_labels"], batch["pool_labels"][hard]])
    w_rank, w_img, w_txt = cfg.train.stage2_loss_weights
    margin, rate, seed = cfg.train.margin, cfg.model.dropout, cfg.train.seed
    with tf.GradientTape() as tape:
        xi, yt = embed_image(model, images, True), embed_text(model, tokens, True)
        img_logits, txt_logits = logits(model, xi, cfg, 1), logits(model, yt, cfg, 2)
        img = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(image_labels, img_logits))
        txt = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(text_labels, txt_logits))
        x, y = unit(xi), unit(yt)
        rank = hinge(x[:A], y[:A], x[A:], y[A:], margin)
        total = w_rank * rank + w_img * img + w_txt * txt
    dropped = lambda e, branch: unit(dropout(e, rate, seed, branch, 0))  # noqa: E731
    xd, yd = dropped(xi, 1), dropped(yt, 2)
    mined_images = np.argmax(x[:A].numpy() @ x[A:].numpy().T, axis=1)
    alternatives = {
        "text_loss_with_image_labels": cross_entropy(image_labels, txt_logits),
        "rank_loss_after_dropout": float(hinge(xd[:A], yd[:A], xd[A:], yd[A:], margin)),
        "rank_loss_with_mined_images": float(hinge(x[:A], y[:A], tf.gather(x[A:], mined_images), y[A:], margin)),
        "rank_loss_unnormalised": float(hinge(tf.nn.relu(xi[:A]), tf.nn.relu(yt[:A]), tf.nn.relu(xi[A:]),
                                              tf.nn.relu(yt[A:]), margin)),
    }
    values = {"rank_loss": float(rank), "image_loss": float(img), "text_loss": float(txt), "loss": float(total)}
    return values, total, tape, alternatives


def one_step(model, cfg, stage, batch):
    """The stage's own step, once, through fit (as the trainer runs it): the logs."""
    from dpcnn.training.stages import compile_stage

    task = compile_stage(model, cfg, stage, steps_per_epoch=1)
    ds = tf.data.Dataset.from_tensors({k: tf.constant(v) for k, v in batch.items()})
    return task, {k: float(v[0]) for k, v in task.fit(ds, epochs=1, verbose=0, shuffle=False).history.items()}


def snapshot(model):
    return [v.numpy().copy() for v in model.variables]


def restore(model, values):
    for v, value in zip(model.variables, values):
        v.assign(value)


# -- stage II ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stage2_case():
    """The reference values of one stage-II step, then the stage's own step from the same state."""
    cfg = tiny_cfg("train.stage2_loss_weights=1.5,0.6,0.3")
    model = build(cfg)
    batch = stage2_batch()
    before = snapshot(model)
    expected, total, tape, alternatives = reference_stage2(model, cfg, batch)
    grads = dict(zip([v.path for v in model.trainable_variables], tape.gradient(total, model.trainable_variables)))
    restore(model, before)
    _, logs = one_step(model, cfg, 2, batch)
    return {"cfg": cfg, "model": model, "before": before, "expected": expected, "grads": grads,
            "alternatives": alternatives, "logs": logs}


def differs(a: float, b: float) -> bool:
    return abs(a - b) > 1e-3 * max(1.0, abs(b))


def test_hardest_negative_is_mined_in_inference_mode_without_touching_running_statistics():
    """PAPER_SPEC §4.2 step 2-5: BN running statistics, no dropout, no update of the statistics."""
    from dpcnn.training import mining

    model = build(tiny_cfg())
    batch = stage2_batch(1)
    stats = [v.numpy().copy() for v in model.non_trainable_variables]
    tokens, labels = mining.mine(model, batch["anchor_images"], batch["pool_tokens"], batch["pool_labels"], "hard")
    hard = reference_mining(model, batch)
    np.testing.assert_array_equal(tokens.numpy(), batch["pool_tokens"][hard])
    np.testing.assert_array_equal(labels.numpy(), batch["pool_labels"][hard])
    for old, var in zip(stats, model.non_trainable_variables):
        np.testing.assert_array_equal(var.numpy(), old, err_msg=var.path)
    # the case is sensitive: batch statistics would have chosen other candidates
    train_anchors = unit(embed_image(model, batch["anchor_images"], True)).numpy()
    train_pool = unit(embed_text(model, batch["pool_tokens"], True)).numpy()
    assert (np.argmax(train_anchors @ train_pool.T, axis=1) != hard).any()


def test_random_mining_takes_pool_row_i_as_the_negative_of_anchor_i():
    from dpcnn.training import mining

    batch = stage2_batch(2)
    tokens, labels = mining.mine(build(tiny_cfg()), batch["anchor_images"], batch["pool_tokens"][:A],
                                 batch["pool_labels"][:A], "random")
    np.testing.assert_array_equal(tokens.numpy(), batch["pool_tokens"][:A])
    np.testing.assert_array_equal(np.asarray(labels), batch["pool_labels"][:A])


def test_ranking_loss_is_on_l2_normalised_post_relu_pre_dropout_features(stage2_case):
    """PAPER_SPEC §1 'feature used by the ranking loss', §4.1 (dropout 0.4 is on in this case)."""
    logs, expected, alt = stage2_case["logs"], stage2_case["expected"], stage2_case["alternatives"]
    assert logs["rank_loss"] == pytest.approx(expected["rank_loss"], rel=1e-4, abs=1e-6)
    assert differs(alt["rank_loss_after_dropout"], expected["rank_loss"])
    assert differs(alt["rank_loss_unnormalised"], expected["rank_loss"])


def test_instance_losses_use_dropout_before_the_one_shared_classifier(stage2_case):
    """Dropout at model.dropout, only before the classifier; one kernel for both branches (§3.2)."""
    logs, expected, model = stage2_case["logs"], stage2_case["expected"], stage2_case["model"]
    assert logs["image_loss"] == pytest.approx(expected["image_loss"], rel=1e-4)
    assert logs["text_loss"] == pytest.approx(expected["text_loss"], rel=1e-4)
    kernels = [v for v in model.trainable_variables if v.shape[-1] == C and "kernel" in v.path]
    assert len(kernels) == 1  # a single classifier kernel in the whole model


def test_negative_texts_carry_the_mined_captions_labels(stage2_case):
    """PAPER_SPEC §4.2 step 6: label_txt of Yn is the label of the image Yn belongs to."""
    logs, expected, alt = stage2_case["logs"], stage2_case["expected"], stage2_case["alternatives"]
    assert logs["text_loss"] == pytest.approx(expected["text_loss"], rel=1e-4)
    assert differs(alt["text_loss_with_image_labels"], expected["text_loss"])


def test_negative_images_are_the_batch_s_second_half_not_mined(stage2_case):
    """PAPER_SPEC §4.2 step 1: Xn is random (the batch's second half); only texts are mined."""
    logs, expected, alt = stage2_case["logs"], stage2_case["expected"], stage2_case["alternatives"]
    assert logs["rank_loss"] == pytest.approx(expected["rank_loss"], rel=1e-4, abs=1e-6)
    assert differs(alt["rank_loss_with_mined_images"], expected["rank_loss"])


def test_stage_two_loss_is_weighted_as_configured(stage2_case):
    """train.stage2_loss_weights = rank : image : text (derOutputs, PAPER_SPEC §4.3), here 1.5 : 0.6 : 0.3."""
    logs, e = stage2_case["logs"], stage2_case["expected"]
    assert logs["loss"] == pytest.approx(e["loss"], rel=1e-4)
    assert e["loss"] == pytest.approx(1.5 * e["rank_loss"] + 0.6 * e["image_loss"] + 0.3 * e["text_loss"], rel=1e-5)


def test_the_step_follows_the_gradient_of_that_loss_and_nothing_flows_into_mining(stage2_case):
    """One SGD step (momentum 0, no decay) moves every trained variable by −lr·m·∂loss/∂w of the
    reference loss, whose negatives are re-encoded in training mode: the mining pass adds nothing."""
    from dpcnn.training.multipliers import parameter_groups

    cfg, model = stage2_case["cfg"], stage2_case["model"]
    old = dict(zip([v.path for v in model.variables], stage2_case["before"]))
    groups = parameter_groups(model, cfg.train.stage2_multipliers, cfg.model.image_backbone)
    assert len(groups) == len(model.trainable_variables)
    for g in groups:
        expected = old[g.variable.path] - 0.5 * g.lr_mult * tf.convert_to_tensor(stage2_case["grads"][g.variable.path]).numpy()
        np.testing.assert_allclose(g.variable.numpy(), expected, rtol=2e-3, atol=2e-5, err_msg=g.key)


def test_stage_two_backbone_bn_momentum_as_configured():
    """train.stage2_backbone_bn_momentum: the running mean moves by (1 − m)(batch mean − old) once per
    step (the mining pass, in inference mode, does not move it)."""
    cfg = tiny_cfg("train.stage2_backbone_bn_momentum=0.8")
    model = build(cfg)
    batch = stage2_batch(3)
    bn = model.image_encoder.get_layer("backbone").get_layer("stem_bn")
    old = bn.moving_mean.numpy().copy()
    images = np.concatenate([batch["anchor_images"], batch["negative_images"]])
    x = model.image_encoder.get_layer("pixel_norm")(images)
    batch_mean = tf.reduce_mean(model.image_encoder.get_layer("backbone").get_layer("stem_conv")(x), axis=(0, 1, 2)).numpy()
    task, _ = one_step(model, cfg, 2, batch)
    assert bn.momentum == 0.8
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.8 * old + 0.2 * batch_mean, rtol=1e-4, atol=1e-4)


# -- stage I ----------------------------------------------------------------------------------


def test_stage_one_is_the_weighted_instance_loss_of_both_branches():
    """train.stage1_loss_weights (here 0 : 0.7 : 1.3): no ranking loss, dropout before the classifier."""
    cfg = tiny_cfg("train.stage1_loss_weights=0,0.7,1.3")
    model = build(cfg)
    batch = stage1_batch()
    before = snapshot(model)
    img = cross_entropy(batch["labels"], logits(model, embed_image(model, batch["images"], True), cfg, 1))
    txt = cross_entropy(batch["labels"], logits(model, embed_text(model, batch["tokens"], True), cfg, 2))
    restore(model, before)
    _, logs = one_step(model, cfg, 1, batch)
    assert logs["image_loss"] == pytest.approx(img, rel=1e-4) and logs["text_loss"] == pytest.approx(txt, rel=1e-4)
    assert logs["loss"] == pytest.approx(0.7 * img + 1.3 * txt, rel=1e-4) and logs["rank_loss"] == 0


@pytest.mark.parametrize("mode", ["batch_stats", "frozen"])
def test_stage_one_frozen_backbone(mode):
    """A backbone with multiplier 0 in stage I: its weights never move. batch_stats (MatConvNet): BN on
    batch statistics, running statistics untouched; frozen (Keras): BN on running statistics."""
    cfg = tiny_cfg("train.stage1_multipliers=backbone.*:0", f"model.backbone_bn={mode}")
    model = build(cfg)
    batch = stage1_batch(4)
    backbone = model.image_encoder.get_layer("backbone")
    weights = [v.numpy().copy() for v in backbone.weights]
    fc1 = model.image_encoder.get_layer("fc1").kernel
    fc1_before = fc1.numpy().copy()
    from dpcnn.training.stages import compile_stage

    compile_stage(model, cfg, 1, 1)
    pixels = model.image_encoder.get_layer("pixel_norm")(batch["images"])
    in_training = backbone(pixels, training=True).numpy()
    in_inference = backbone(pixels, training=False).numpy()
    if mode == "batch_stats":
        assert np.abs(in_training - in_inference).max() > 1e-2  # batch statistics in training mode
    else:
        np.testing.assert_allclose(in_training, in_inference, atol=1e-5)  # running statistics
    one_step(model, cfg, 1, batch)
    for old, var in zip(weights, backbone.weights):
        np.testing.assert_array_equal(var.numpy(), old, err_msg=var.path)  # moving statistics included
    assert np.abs(fc1.numpy() - fc1_before).max() > 1e-6  # while the head above it trains


def test_stage_one_runs_the_instance_step_and_stage_two_the_ranking_step():
    from dpcnn.training.stages import InstanceStage, RankingStage, compile_stage

    model = build(tiny_cfg())
    assert isinstance(compile_stage(model, tiny_cfg(), 1, 1), InstanceStage)
    assert isinstance(compile_stage(model, tiny_cfg(), 2, 1), RankingStage)


# -- the stage-II objectives beside the paper's (train.stage2_objective) and the ablations --------


def numpy_vsepp(x, y, margin, labels):
    """VSE++'s hardest in-batch negative, both directions, summed over rows / 2A (pairs of one label excluded)."""
    s, n = x @ y.T, len(x)
    negative = (labels[:, None] != labels[None, :]) & ~np.eye(n, dtype=bool)
    d = np.diag(s)
    image_rows = np.where(negative, np.maximum(0, margin - d[:, None] + s), 0).max(axis=1)
    text_cols = np.where(negative, np.maximum(0, margin - d[None, :] + s), 0).max(axis=0)
    return (image_rows.sum() + text_cols.sum()) / (2 * n)


def numpy_infonce(x, y, scale, labels):
    s, n = scale * (x @ y.T), len(x)
    keep = (labels[:, None] != labels[None, :]) | np.eye(n, dtype=bool)
    z = np.where(keep, s, -np.inf)
    rows = np.log(np.exp(z).sum(axis=1)) - np.diag(z)
    cols = np.log(np.exp(z).sum(axis=0)) - np.diag(z)
    return 0.5 * (rows.mean() + cols.mean())


@pytest.fixture(scope="module")
def objective_model():
    """One tiny model for the objective tests, and its initial state (each test restores it)."""
    model = build(tiny_cfg())
    return model, snapshot(model)


@pytest.mark.parametrize("objective", ["vsepp", "infonce"])
def test_in_batch_objectives_replace_the_ranking_term_on_the_anchor_pairs(objective_model, objective):
    """vsepp / infonce: the anchors' images against their positive texts, in-batch negatives, anchors
    of one label not negatives of each other, weighted by the rank weight; the instance losses stay."""
    model, before = objective_model
    restore(model, before)
    cfg = tiny_cfg(f"train.stage2_objective={objective}", "train.stage2_loss_weights=1.5,0.6,0.3",
                   *(["train.infonce_temperature=0.5"] if objective == "infonce" else []))
    batch = stage2_batch(5)
    batch["pool_labels"] %= C  # every candidate a class of the C-way classifier
    batch["anchor_labels"][1] = batch["anchor_labels"][0]  # two anchors of one class
    hard = reference_mining(model, batch)
    images = np.concatenate([batch["anchor_images"], batch["negative_images"]])
    tokens = np.concatenate([batch["positive_tokens"], batch["pool_tokens"][hard]])
    x = unit(embed_image(model, images, True)).numpy()[:A]
    y = unit(embed_text(model, tokens, True)).numpy()[:A]
    labels, distinct = batch["anchor_labels"], np.arange(A)
    if objective == "vsepp":
        expected, unmasked = numpy_vsepp(x, y, 0.7, labels), numpy_vsepp(x, y, 0.7, distinct)
    else:
        expected, unmasked = numpy_infonce(x, y, 2.0, labels), numpy_infonce(x, y, 2.0, distinct)
    restore(model, before)
    task, logs = one_step(model, cfg, 2, batch)
    assert logs["rank_loss"] == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert differs(unmasked, expected)
    assert logs["loss"] == pytest.approx(1.5 * logs["rank_loss"] + 0.6 * logs["image_loss"] + 0.3 * logs["text_loss"],
                                         rel=1e-4)
    if objective == "infonce":  # the temperature is trained (from 1 / 0.5) and saved with the stage's backups
        assert any(v is task.log_logit_scale for v in task.train_variables)
        assert any(w is task.log_logit_scale for w in task.weights)
        assert float(task.log_logit_scale.numpy()) != pytest.approx(np.log(2.0), abs=1e-6)


def test_instance_alone_ablation_is_stage_two_with_rank_weight_zero(objective_model):
    """The paper's "instance loss alone": stage II trains the instance losses only (rank weight 0)."""
    model, before = objective_model
    restore(model, before)
    cfg = tiny_cfg("train.stage2_loss_weights=0,1,0.1")
    batch = stage2_batch(6)
    batch["pool_labels"] %= C
    _, logs = one_step(model, cfg, 2, batch)
    assert logs["rank_loss"] > 0  # still measured
    assert logs["loss"] == pytest.approx(logs["image_loss"] + 0.1 * logs["text_loss"], rel=1e-5)


def test_infonce_temperature_is_fixed_with_multiplier_zero(objective_model):
    from dpcnn.training.stages import compile_stage

    model, _ = objective_model
    learned = compile_stage(model, tiny_cfg("train.stage2_objective=infonce"), 2, 1)
    fixed = compile_stage(model, tiny_cfg("train.stage2_objective=infonce", "train.infonce_scale_multiplier=0"), 2, 1)
    assert any(v is learned.log_logit_scale for v in learned.train_variables)
    assert learned.optimizer.multipliers[learned.log_logit_scale.path] == (0.01, 0.0)
    assert not any(v is fixed.log_logit_scale for v in fixed.train_variables)
