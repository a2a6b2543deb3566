"""tf.data pipelines: shapes, determinism, resume offsets, caption/label alignment, shifts, negatives."""

import math

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dpcnn.config import apply_overrides
from dpcnn.data import pipeline
from dpcnn.data.prepare import SplitArrays


def batches(ds, n):
    return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]


def own_caption_rows(split: SplitArrays, image: int) -> list[tuple]:
    return [tuple(t[t > 0]) for t, ci in zip(split.tokens, split.caption_image) if ci == image]


def test_stage1_shapes_dtypes_and_alignment(tiny_cfg, tiny_data):
    split = tiny_data.splits["train"]
    (b,) = batches(pipeline.stage1_dataset(split, tiny_cfg, 0, 1), 1)
    size, length, batch = tiny_cfg.data.image_size, tiny_cfg.data.max_len, tiny_cfg.train.batch_size
    assert b["images"].shape == (batch, size, size, 3) and b["images"].dtype == np.float32
    assert b["tokens"].shape == (batch, length) and b["tokens"].dtype == np.int32
    assert b["labels"].shape == (batch,) and b["labels"].dtype == np.int32
    assert 0 <= b["images"].min() and b["images"].max() <= 255
    for tokens, label in zip(b["tokens"], b["labels"]):
        image = int(np.flatnonzero(split.labels == label)[0])
        assert tuple(tokens[tokens > 0]) in own_caption_rows(split, image)  # the caption is the image's own


def test_batches_are_a_pure_function_of_seed_epoch_and_step(tiny_cfg, tiny_data):
    split = tiny_data.splits["train"]
    first = batches(pipeline.stage1_dataset(split, tiny_cfg, 0, 2), 8)
    again = batches(pipeline.stage1_dataset(split, tiny_cfg, 0, 2), 8)
    for a, b in zip(first, again):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    steps = pipeline.steps_per_epoch(split.num_images, tiny_cfg.train.batch_size)
    resumed = batches(pipeline.stage1_dataset(split, tiny_cfg, 0, 2, skip_steps=2), 3)
    for a, b in zip(first[2:5], resumed):
        np.testing.assert_array_equal(a["images"], b["images"])
        np.testing.assert_array_equal(a["tokens"], b["tokens"])
    epoch1 = batches(pipeline.stage1_dataset(split, tiny_cfg, 1, 2), 1)[0]
    np.testing.assert_array_equal(epoch1["labels"], first[steps]["labels"])
    assert not np.array_equal(first[0]["labels"], first[steps]["labels"])  # a new order each epoch
    other_seed = apply_overrides(tiny_cfg, ["train.seed=5"])
    assert not np.array_equal(batches(pipeline.stage1_dataset(split, other_seed, 0, 1), 1)[0]["labels"],
                              first[0]["labels"])


def test_an_epoch_sees_every_training_image_once(tiny_cfg, tiny_data):
    split = tiny_data.splits["train"]
    steps = pipeline.steps_per_epoch(split.num_images, tiny_cfg.train.batch_size)
    labels = np.concatenate([b["labels"] for b in batches(pipeline.stage1_dataset(split, tiny_cfg, 0, 1), steps)])
    assert len(labels) == len(set(labels.tolist())) == steps * tiny_cfg.train.batch_size


def test_shift_tokens_by_hand():
    tokens = tf.constant([[5, 6, 7, 0, 0, 0], [9, 0, 0, 0, 0, 0]])
    out = pipeline.shift_tokens(tokens, tf.constant([2, 5])).numpy()
    np.testing.assert_array_equal(out, [[0, 0, 5, 6, 7, 0], [0, 0, 0, 0, 0, 9]])


def test_random_starts_cover_exactly_the_valid_range():
    length = 8
    lengths = tf.constant([3] * 4000 + [8] * 10 + [1] * 4000)
    u = tf.random.stateless_uniform([8010], seed=[1, 2])
    starts = pipeline.random_starts(lengths, length, u).numpy()
    assert set(starts[:4000]) == set(range(0, 6))  # L - len + 1 = 6 positions
    assert set(starts[4000:4010]) == {0}
    assert set(starts[4010:]) == set(range(0, 8))


def test_crop_boxes_stay_inside_with_the_configured_aspect_and_size():
    u = tf.random.stateless_uniform([400, 4], seed=[3, 7])
    heights = tf.constant([200, 300] * 200)
    widths = tf.constant([300, 120] * 200)
    boxes = np.stack([b.numpy() for b in pipeline.crop_boxes(heights, widths, u, (0.8, 1.0), (0.75, 4 / 3))], 1)
    for (y0, x0, ch, cw), h, w in zip(boxes, heights.numpy(), widths.numpy()):
        assert 0 <= y0 and 0 <= x0 and y0 + ch <= h and x0 + cw <= w
        aspect = cw / ch
        assert 0.75 - 0.02 <= aspect <= 4 / 3 + 0.02
        largest_w = min(w, h * aspect)  # the box is 80-100 % (per side) of the largest of that aspect
        assert 0.8 - 0.02 <= cw / largest_w <= 1.0 + 1e-6


def test_crop_area_is_uniform_as_vl_imreadjpeg_draws_it():
    # MatConvNet vl_imreadjpeg.cu (the crop-size block): a = maxCropSize², b = minCropSize²,
    # size = sqrt(z * (b - a) + a), z ~ U[0, 1]. So the side at z is sqrt(0.64 + 0.36 z) for
    # CropSize [0.8 1]: 0.8 at one end, 1 at the other, sqrt(0.82) = 0.905539 in the middle
    # (a uniform side would give 0.9 there).
    u = tf.constant([0.0, 0.5, 1.0, 0.25])
    side = pipeline.crop_side(u, (0.8, 1.0)).numpy()
    np.testing.assert_allclose(side, [0.8, math.sqrt(0.82), 1.0, math.sqrt(0.73)], rtol=1e-6)


def _row_coded_image(path, width, height):
    """A grey PNG whose every pixel of row r has the value r * 255 / (height - 1)."""
    rows = np.round(np.linspace(0, 255, height)).astype(np.uint8)
    Image.fromarray(np.repeat(np.repeat(rows[:, None, None], width, 1), 3, 2)).save(path)


def _mean_height_covered(path, height, data, n=300):
    """Mean fraction of the picture's rows that a training crop of ``path`` contains, over n draws."""
    image = tf.constant(np.asarray(Image.open(path).convert("RGB")))
    u = tf.random.stateless_uniform([n, pipeline.AUG], seed=[11, 5])
    shape = tf.shape(image)
    images = pipeline.augment(lambda i: image, tf.fill([n], shape[0]), tf.fill([n], shape[1]), u, data).numpy()
    rows = images[..., 0] * (height - 1) / 255
    return float(np.mean((rows.max(axis=(1, 2)) - rows.min(axis=(1, 2)) + 1) / height))


def test_squashed_frame_crops_cover_most_of_a_pedestrian(tmp_path):
    # CUHK-PEDES: the official code squashes every image to 256 x 256
    # (dataset/CUHK-PEDES-prepare/resize_image.m:22, aspect not kept) and crops that with
    # CropSize [0.8 1], CropAnisotropy [3/4 4/3]. The crop then covers, of the picture's height,
    # E[side] * E[min(1, 1/aspect)] = 0.9037 * 0.9345 = 0.8445 on average: E[sqrt(U[0.64, 1])]
    # = (2/3)(1 - 0.8^3)/0.36 = 0.9037, and with ln(aspect) ~ U[-ln 4/3, ln 4/3] the box is as
    # tall as the square for aspect <= 1 and 1/aspect of it otherwise,
    # 0.5 + 0.5 (1 - 3/4) / ln(4/3) = 0.9345. Cropping the tall original instead covers ~0.36.
    from dpcnn.config import DataConfig

    path = tmp_path / "tall.png"
    _row_coded_image(path, 64, 160)
    data = DataConfig(image_size=56, resize_shorter=256, resize_square=True, flip=False)
    assert _mean_height_covered(path, 160, data) == pytest.approx(0.8445, abs=0.03)
    unsquashed = DataConfig(image_size=56, resize_shorter=256, resize_square=False, flip=False)
    assert _mean_height_covered(path, 160, unsquashed) < 0.5


def test_stage2_layout_positives_and_pool_outside_the_batch(tiny_cfg, tiny_data):
    split = tiny_data.splits["train"]
    (b,) = batches(pipeline.stage2_dataset(split, tiny_cfg, 0, 1), 1)
    half, pool = tiny_cfg.train.batch_size // 2, tiny_cfg.train.negative_pool
    size, length = tiny_cfg.data.image_size, tiny_cfg.data.max_len
    assert b["anchor_images"].shape == b["negative_images"].shape == (half, size, size, 3)
    assert b["positive_tokens"].shape == (half, length) and b["pool_tokens"].shape == (pool, length)
    assert b["pool_labels"].shape == (pool,)
    in_batch = set(b["anchor_labels"]) | set(b["negative_labels"])
    assert len(in_batch) == 2 * half
    assert not in_batch & set(b["pool_labels"])  # candidates come from images outside the batch
    for tokens, label in zip(b["positive_tokens"], b["anchor_labels"]):
        image = int(np.flatnonzero(split.labels == label)[0])
        assert tuple(tokens[tokens > 0]) in own_caption_rows(split, image)
    for tokens, label in zip(b["pool_tokens"], b["pool_labels"]):
        image = int(np.flatnonzero(split.labels == label)[0])
        assert tuple(tokens[tokens > 0]) in own_caption_rows(split, image)


def _identity_split(num_people=12, per_person=3) -> SplitArrays:
    """A CUHK-like split: several images per person ID, one caption each (image i → tokens [i+1])."""
    n = num_people * per_person
    identities = np.repeat(np.arange(num_people), per_person).astype(np.int32)
    return SplitArrays(
        paths=np.asarray(["unused.jpg"] * n, dtype=object), image_ids=np.asarray([str(i) for i in range(n)], dtype=object),
        labels=identities.copy(), identities=identities, sizes=np.full((n, 2), 8, np.int32),
        tokens=np.stack([np.r_[i + 1, np.zeros(3, int)] for i in range(n)]).astype(np.int32),
        lengths=np.ones(n, np.int32), caption_image=np.arange(n, dtype=np.int32),
    )


def test_caption_groups_by_identity():
    split = _identity_split()
    groups = pipeline.CaptionGroups.from_split(split, by_identity=True)
    for image in range(split.num_images):
        members = set(groups.members[groups.offsets[image]:groups.offsets[image + 1]].tolist())
        assert members == set(np.flatnonzero(split.identities == split.identities[image]).tolist())
    own = pipeline.CaptionGroups.from_split(split, by_identity=False)
    assert [own.members[own.offsets[i]:own.offsets[i + 1]].tolist() for i in range(3)] == [[0], [1], [2]]


def test_random_mining_draws_other_identities(tiny_cfg, monkeypatch):
    cfg = apply_overrides(tiny_cfg, ["train.negative_mining=random", "train.batch_size=8", "data.cache_images=false"])
    split = _identity_split()
    monkeypatch.setattr(pipeline._Tables, "images", lambda self, indices, uniform, data: tf.zeros(
        [tf.shape(indices)[0], data.image_size, data.image_size, 3]))
    for b in batches(pipeline.stage2_dataset(split, cfg, 0, 3, by_identity=True), 8):
        assert b["pool_tokens"].shape[0] == 4  # one negative caption per anchor
        assert np.all(b["negative_labels"] != b["anchor_labels"])
        assert np.all(b["pool_labels"] != b["anchor_labels"])
        pool_images = b["pool_tokens"].max(axis=1) - 1  # the one word (i + 1) of image i, shifted
        np.testing.assert_array_equal(split.identities[pool_images], b["pool_labels"])


def test_candidate_pool_is_position_shifted(tiny_cfg, tiny_data):
    """PAPER_SPEC §2.1: every training sample gets its own position shift, the 256 candidates included."""
    split = tiny_data.splits["train"]
    starts = []
    for b in batches(pipeline.stage2_dataset(split, tiny_cfg, 0, 2), 8):
        for row in b["pool_tokens"]:
            nonzero = np.flatnonzero(row)
            starts.append(int(nonzero[0]))
            assert nonzero[-1] - nonzero[0] + 1 == len(nonzero)  # still contiguous
    assert len(set(starts)) > 3  # captions of 2-8 words in 16 slots start at many places
    unshifted = apply_overrides(tiny_cfg, ["train.position_shift=false"])
    b = batches(pipeline.stage2_dataset(split, unshifted, 0, 1), 1)[0]
    assert all(row[0] > 0 for row in b["pool_tokens"])


def test_cached_images_give_the_same_batches_as_decoding(tiny_cfg, tiny_data):
    split = tiny_data.splits["train"]
    cached = batches(pipeline.stage1_dataset(split, apply_overrides(tiny_cfg, ["data.cache_images=true"]), 0, 1), 2)
    decoded = batches(pipeline.stage1_dataset(split, apply_overrides(tiny_cfg, ["data.cache_images=false"]), 0, 1), 2)
    for a, b in zip(cached, decoded):
        np.testing.assert_array_equal(a["images"], b["images"])


@pytest.mark.parametrize("n, batch, expected", [(48, 8, 6), (50, 8, 6)])
def test_steps_per_epoch(n, batch, expected):
    assert pipeline.steps_per_epoch(n, batch) == expected
    assert math.isclose(pipeline.steps_per_epoch(n, batch, configured=3), 3)
