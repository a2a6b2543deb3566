"""``make mutants``: apply single-line mutations to the paper's core and check that a fast test fails.

Each mutant replaces one exact line fragment (it must occur exactly once in its file) in a
temporary copy of the repository, runs the fast test files that cover it there, and counts as
killed when they fail. A mutant that survives names a detail of the method that no test pins.
Add a mutant whenever a bug is fixed. Not part of CI (4-6 minutes on 2 cores).

    python tools/mutants.py [--only NAME ...] [--list] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

STAGES = ("tests/test_stages.py",)
LOSSES = ("tests/test_losses.py", "tests/test_stages.py")
METRICS = ("tests/test_metrics.py",)
PIPELINE = ("tests/test_pipeline.py",)
FEATURES = ("tests/test_features.py",)
INPUT = ("tests/test_input.py",)
OPTIMISER = ("tests/test_optimizer.py", "tests/test_multipliers.py")


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    original: str
    mutated: str
    tests: tuple[str, ...]
    detail: str


MUTANTS = (
    # -- mining (PAPER_SPEC §4.2) --------------------------------------------------------------
    Mutant("anchors-in-training-mode", "dpcnn/training/mining.py",
           "model.image_embedding(anchor_images, training=False)", "model.image_embedding(anchor_images, training=True)",
           STAGES, "mining anchors are encoded in inference mode"),
    Mutant("candidates-in-training-mode", "dpcnn/training/mining.py",
           "model.text_embedding(pool_tokens, training=False)", "model.text_embedding(pool_tokens, training=True)",
           STAGES, "candidates are encoded in inference mode"),
    Mutant("easiest-negative", "dpcnn/training/mining.py",
           "return ops.cast(ops.argmax(sims, axis=-1), \"int32\")", "return ops.cast(ops.argmin(sims, axis=-1), \"int32\")",
           STAGES, "the hardest (most similar) candidate is the negative"),
    Mutant("negative-label-not-mined", "dpcnn/training/mining.py",
           "tf.gather(pool_labels, index)", "pool_labels[: tf.shape(index)[0]]",
           STAGES, "the mined caption's label goes with it"),
    Mutant("pool-inside-the-batch", "dpcnn/data/negatives.py",
           "(base[..., None] + batch + tf.minimum(r, n - batch - 1)) % n", "(base[..., None] + tf.minimum(r, n - batch - 1)) % n",
           PIPELINE, "candidates come from images outside the batch"),
    # -- the stage-II step ---------------------------------------------------------------------
    Mutant("unnormalised-ranking-features", "dpcnn/training/stages.py",
           "x = self.dual_path.ranking_features(image_emb)", "x = tf.nn.relu(image_emb)",
           STAGES, "the ranking loss compares L2-normalised features"),
    Mutant("pre-relu-ranking-features", "dpcnn/model/dual_path.py",
           "return l2_normalize(ops.relu(embedding))", "return l2_normalize(embedding)",
           STAGES, "ranking features are post-ReLU"),
    Mutant("ranking-features-after-dropout", "dpcnn/training/stages.py",
           "y = self.dual_path.ranking_features(text_emb)",
           "y = self.dual_path.ranking_features(tf.nn.experimental.stateless_dropout(text_emb, 0.5, seed=[1, 2]))",
           STAGES, "ranking features are pre-dropout"),
    Mutant("ranking-loss-on-the-mining-pass", "dpcnn/training/stages.py",
           "x = self.dual_path.ranking_features(image_emb)",
           "x = self.dual_path.ranking_features(self.dual_path.image_embedding(images, training=False))",
           STAGES, "the ranking loss and its gradient use the training-mode pass, not the mining pass"),
    Mutant("text-classifier-not-shared", "dpcnn/model/dual_path.py",
           "return logits[:n], logits[n:]", "return logits[:n], ops.flip(logits[n:], axis=1)",
           STAGES, "one classifier (the same kernel, the same columns) for both branches"),
    Mutant("negative-text-labels-of-the-images", "dpcnn/training/stages.py",
           "text_labels = tf.concat([data[\"anchor_labels\"], negative_labels], axis=0)",
           "text_labels = tf.concat([data[\"anchor_labels\"], data[\"negative_labels\"]], axis=0)",
           STAGES, "negative texts carry their own (mined) label"),
    Mutant("negative-images-replaced", "dpcnn/training/stages.py",
           "images = tf.concat([data[\"anchor_images\"], data[\"negative_images\"]], axis=0)",
           "images = tf.concat([data[\"anchor_images\"], data[\"anchor_images\"][::-1]], axis=0)",
           STAGES, "the negative images are the batch's second half, not chosen by the model"),
    Mutant("rank-weight-ignored", "dpcnn/training/stages.py",
           "loss = loss + self.loss_weights[0] * values[\"rank_loss\"]", "loss = loss + values[\"rank_loss\"]",
           STAGES, "the ranking loss has its configured weight"),
    Mutant("instance-weights-swapped", "dpcnn/training/stages.py",
           "_, w_img, w_txt = self.loss_weights", "_, w_txt, w_img = self.loss_weights",
           STAGES, "image and text instance losses have their configured weights"),
    Mutant("same-dropout-mask-both-branches", "dpcnn/training/stages.py",
           "self.dropout_seed(1), self.dropout_seed(2))", "self.dropout_seed(1), self.dropout_seed(1))",
           STAGES, "each branch draws its own dropout mask"),
    Mutant("no-dropout", "dpcnn/model/dual_path.py",
           "return stateless_dropout(x, self.dropout_rate, dropout_seed) if dropout_seed is not None else x",
           "return x",
           STAGES, "dropout before the shared classifier"),
    Mutant("dropout-rate-fixed", "dpcnn/model/dual_path.py",
           "stateless_dropout(x, self.dropout_rate, dropout_seed)", "stateless_dropout(x, 0.5, dropout_seed)",
           STAGES, "dropout at the configured rate"),
    # -- BN rules ------------------------------------------------------------------------------
    Mutant("frozen-backbone-updates-running-stats", "dpcnn/training/multipliers.py",
           "layer.momentum = 1.0", "layer.momentum = 0.99",
           STAGES, "a frozen backbone (batch_stats) leaves its running statistics untouched"),
    Mutant("frozen-mode-trainable", "dpcnn/training/multipliers.py",
           "backbone.trainable = False", "backbone.trainable = True",
           STAGES, "backbone_bn=frozen runs BN on its running statistics"),
    Mutant("stage2-bn-momentum-ignored", "dpcnn/training/multipliers.py",
           "momentum = cfg.model.bn_momentum if stage == 1 else cfg.train.stage2_backbone_bn_momentum",
           "momentum = cfg.model.bn_momentum", STAGES, "stage-II backbone BN momentum as configured"),
    # -- losses --------------------------------------------------------------------------------
    Mutant("ranking-sign", "dpcnn/losses.py",
           "l1 = ops.relu(margin - (s_pos - s_img_negtext))", "l1 = ops.relu(margin + (s_pos - s_img_negtext))",
           LOSSES, "the hinge rewards similar positives (the old Keras port's bug)"),
    Mutant("half-margin", "dpcnn/losses.py",
           "l2 = ops.relu(margin - (s_pos - s_text_negimg))", "l2 = ops.relu(0.5 * margin - (s_pos - s_text_negimg))",
           LOSSES, "both hinge terms use the margin"),
    Mutant("instance-loss-summed", "dpcnn/losses.py",
           "return ops.mean(per_example)", "return ops.sum(per_example)", LOSSES, "the instance loss is a batch mean"),
    # -- optimiser and multipliers --------------------------------------------------------------
    Mutant("no-nesterov", "dpcnn/training/optimizer.py",
           "delta = mu * new_v - gradient if self.nesterov else new_v", "delta = new_v",
           OPTIMISER, "Nesterov momentum"),
    Mutant("multiplier-ignored", "dpcnn/training/optimizer.py",
           "self.assign_add(variable, lr * ops.cast(lr_mult, dtype) * delta)", "self.assign_add(variable, lr * delta)",
           OPTIMISER + STAGES, "every variable moves by its multiplier"),
    Mutant("last-match-wins", "dpcnn/training/multipliers.py",
           "for pattern, mult in rules:", "for pattern, mult in reversed(rules):",
           OPTIMISER, "the first matching row decides"),
    # -- metrics -------------------------------------------------------------------------------
    Mutant("worst-caption-rank", "dpcnn/metrics.py",
           "best = np.maximum.reduceat(own[order], starts)", "best = np.minimum.reduceat(own[order], starts)",
           METRICS, "image→text takes the best rank among the image's captions"),
    Mutant("lower-median", "dpcnn/metrics.py",
           "k = ranks.size // 2", "k = (ranks.size - 1) // 2", METRICS, "Med r is the official upper median"),
    Mutant("standard-ap-in-trapezoid", "dpcnn/metrics.py",
           "precision = (precision + before) / 2", "precision = precision", METRICS, "the official trapezoid mAP"),
    # -- input pipeline and test-time features --------------------------------------------------
    Mutant("crop-side-uniform", "dpcnn/data/pipeline.py",
           "return tf.sqrt(lo2 + uniform * (hi2 - lo2))",
           "return float(crop_size[0]) + uniform * (float(crop_size[1]) - float(crop_size[0]))",
           PIPELINE, "the crop area is uniform (vl_imreadjpeg.cu)"),
    Mutant("crop-not-in-squashed-frame", "dpcnn/data/pipeline.py",
           "square = data.resize_shorter if data.resize_square else 0", "square = 0",
           PIPELINE, "CUHK-PEDES crops are drawn in the 256 x 256 squashed frame"),
    Mutant("pool-not-shifted", "dpcnn/data/pipeline.py",
           "\"pool_tokens\": tables.tokens_of(tables.pick_captions(p[\"pool_images\"], p[\"u_pool\"]), p[\"u_pool_shift\"], cfg),",
           "\"pool_tokens\": tf.gather(tables.tokens, tables.pick_captions(p[\"pool_images\"], p[\"u_pool\"])),",
           PIPELINE, "the position shift is applied to the candidate pool too"),
    Mutant("one-shift-too-few", "dpcnn/model/layers.py",
           "copies = length - lengths + 1", "copies = tf.maximum(length - lengths, 1)",
           FEATURES, "the text feature sums all L + 1 - len shifts"),
    Mutant("no-test-time-flip", "dpcnn/model/features.py", "    if flip:\n", "    if False:\n",
           FEATURES, "the image feature adds its mirror image's"),
    # -- what the backbone sees (PAPER_SPEC §1) ---------------------------------------------------
    Mutant("no-mean-subtraction", "dpcnn/model/layers.py",
           "x = ops.cast(images, self.compute_dtype) - ops.convert_to_tensor(",
           "x = ops.cast(images, self.compute_dtype) + 0 * ops.convert_to_tensor(",
           INPUT, "the image branch subtracts the dataset mean"),
    Mutant("mean-in-reversed-order", "dpcnn/model/layers.py",
           "np.asarray(self.mean, dtype=\"float32\"), dtype=self.compute_dtype",
           "np.asarray(self.mean[::-1], dtype=\"float32\"), dtype=self.compute_dtype",
           INPUT, "the RGB mean is subtracted from the RGB channels, before any reordering"),
    Mutant("no-bgr-reorder", "dpcnn/model/layers.py", "x = ops.flip(x, axis=-1)", "x = x",
           INPUT, "Caffe-origin ImageNet weights receive BGR (keras preprocess_input)"),
    Mutant("caffe-weights-fed-rgb", "dpcnn/model/image_branch.py",
           "return cfg.image_backbone != \"small\"", "return False",
           INPUT, "every Keras-application backbone (ResNet, VGG) is fed BGR"),
    Mutant("small-backbone-fed-bgr", "dpcnn/model/image_branch.py",
           "return cfg.image_backbone != \"small\"", "return True",
           INPUT, "the small CPU backbone is fed RGB"),
    Mutant("flip-rate-0.4", "dpcnn/data/pipeline.py", "uniform[:, 4] < 0.5", "uniform[:, 4] < 0.4",
           INPUT, "half of the training images are flipped"),
    Mutant("flip-up-down", "dpcnn/data/pipeline.py", "tf.reverse(out, axis=[2])", "tf.reverse(out, axis=[1])",
           INPUT, "the training flip is left-right"),
    Mutant("flip-ignores-data-flip", "dpcnn/data/pipeline.py", "    if data.flip:\n", "    if True:\n",
           INPUT, "data.flip=false flips nothing"),
    Mutant("bilinear-training-crop", "dpcnn/data/pipeline.py",
           "method=\"bicubic\", antialias=True", "method=\"bilinear\", antialias=True",
           INPUT, "the training crop is resized bicubically (vl_imreadjpeg)"),
    Mutant("training-crop-aliased", "dpcnn/data/pipeline.py",
           "method=\"bicubic\", antialias=True", "method=\"bicubic\", antialias=False",
           INPUT, "the shrinking training crop is antialiased (Pillow/MATLAB bicubic)"),
)


def run_one(m: Mutant, work: Path) -> tuple[str, float, str]:
    """Apply ``m`` in ``work``, run its tests, restore the file: (outcome, seconds, last output line).

    outcome: ``killed`` (a test failed: pytest exit 1), ``SURVIVED`` (exit 0) or ``BROKEN`` (any other
    exit: the mutated code or the tests could not be collected, which proves nothing)."""
    path = work / m.file
    source = path.read_text()
    if source.count(m.original) != 1:
        raise SystemExit(f"mutant {m.name}: {m.original!r} occurs {source.count(m.original)} times in {m.file}")
    path.write_text(source.replace(m.original, m.mutated))
    env = {**os.environ, "PYTHONPATH": str(work), "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.time()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *m.tests],
                              cwd=work, env=env, capture_output=True, text=True)
    finally:
        path.write_text(source)
    tail = (done.stdout.strip().splitlines() or [""])[-1]
    outcome = {0: "SURVIVED", 1: "killed"}.get(done.returncode, "BROKEN")
    return outcome, time.time() - start, tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", help="run these mutants only")
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy of the repository")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name:40s} {m.file:32s} {m.detail}")
        return 0
    work = Path(tempfile.mkdtemp(prefix="dpcnn-mutants-"))
    shutil.copytree(REPO / "dpcnn", work / "dpcnn")
    shutil.copytree(REPO / "tests", work / "tests")
    for name in ("setup.cfg", "pyproject.toml"):
        shutil.copy(REPO / name, work / name)
    start, survivors, broken = time.time(), [], []
    print(f"{len(chosen)} mutants, in {work}")
    for m in chosen:
        outcome, seconds, tail = run_one(m, work)
        print(f"  {outcome:8s} {m.name:40s} {seconds:6.1f} s  {tail[:60]}", flush=True)
        {"SURVIVED": survivors, "BROKEN": broken}.get(outcome, []).append(m)
    killed = len(chosen) - len(survivors) - len(broken)
    print(f"{killed} of {len(chosen)} killed in {(time.time() - start) / 60:.1f} min")
    for m in survivors:
        print(f"survivor: {m.name} ({m.file}): no fast test pins that {m.detail}")
    for m in broken:
        print(f"broken: {m.name} ({m.file}): its tests did not run (a collection or usage error); fix the mutant")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if survivors or broken else 0


if __name__ == "__main__":
    sys.exit(main())
