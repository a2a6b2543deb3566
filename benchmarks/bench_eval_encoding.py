"""Benchmark: test-time encoding (``Encoders.images`` / ``Encoders.texts``) vs bare ``model.predict``.

    .venv/bin/python benchmarks/bench_eval_encoding.py [--root /tmp/bench_data] [--split train]
                                                       [--repeats 5]

On the ``demo`` preset (model with random weights: speed does not depend on the weights), for
the images and captions of ``--split``:

* **ours**: ``Encoders.images(paths, sizes)`` — JPEG files → tf.data (decode, pre-resize, batch
  by size) → the image encoder on each batch (and on its horizontal flip with ``eval.flip``) →
  spatial sum → L2 — and ``Encoders.texts(tokens, lengths)`` — every valid position shift of
  every caption (``eval.all_shifts``) → the text encoder → sum per caption → L2;
* **baseline**: the same work as bare ``model.predict`` calls on tensors already in memory:
  the decoded, pre-resized images (and their flips, as a second predict), and the expanded
  shifts, with the same batch sizes (images ``eval.batch_size``; texts 8 × that).

Both are traced/warmed once before timing; each is timed ``--repeats`` times and the best is
kept (the machine is shared). Ratio = baseline time / our time (1.0 = no overhead at all; goal
≥ 0.9). Measured with the demo's setting (``eval.flip=false``) and with ``eval.flip=true`` (the
paper presets' setting). The features of both paths are checked to agree.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as B  # noqa: E402

GOAL = 0.9


def timed(fn, repeats: int) -> tuple[float, list[float], object]:
    out = fn()  # warm-up: tracing, first-call set-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, out


def cached_images(split, cfg) -> list[tuple]:
    """The evaluation pre-processing done once: [(indices, float32 [n, h, w, 3])] per size group."""
    import numpy as np

    from dpcnn.data.pipeline import eval_image_batches

    groups = []
    for index, ds in eval_image_batches(split.paths, split.sizes, cfg.data, cfg.eval.image_mode,
                                        cfg.eval.batch_size):
        groups.append((index, np.concatenate([b.numpy() for b in ds])))
    return groups


def tiled(split, copies: int):
    """The split's images and captions repeated ``copies`` times (more work per timing)."""
    import numpy as np

    from dpcnn.data.prepared import SplitArrays

    if copies <= 1:
        return split
    n = split.num_images
    return SplitArrays(
        np.tile(split.paths, copies), np.tile(split.image_ids, copies), np.tile(split.labels, copies),
        np.tile(split.identities, copies), np.tile(split.sizes, (copies, 1)), np.tile(split.tokens, (copies, 1)),
        np.tile(split.lengths, copies),
        np.concatenate([split.caption_image + k * n for k in range(copies)]), split.captions * copies,
    )


def run(cfg, data, split_name: str, repeats: int, copies: int) -> dict:
    import numpy as np

    from dpcnn.encoders import Encoders, expand_shifts
    from dpcnn.training import build_for

    split = tiled(data.splits[split_name], copies)
    model = build_for(cfg, data)
    enc = Encoders(model.image_encoder, model.text_encoder, cfg)
    batch = cfg.eval.batch_size
    flip = cfg.eval.flip
    print(f"\n== eval.flip={str(flip).lower()}, eval.all_shifts={str(cfg.eval.all_shifts).lower()}, "
          f"image_mode={cfg.eval.image_mode}: {split.num_images} {split_name} images, "
          f"{split.num_captions} captions ({copies} × the split)", flush=True)

    # --- images -------------------------------------------------------------------------------
    t_ours_img, all_ours_img, feats_ours = timed(
        lambda: enc.images(split.paths, split.sizes, progress=False), repeats)
    groups = cached_images(split, cfg)
    n_pixels = sum(x.size for _, x in groups)

    def bare_images():
        out = []
        for _, x in groups:
            f = model.image_encoder.predict(x, batch_size=batch, verbose=0)
            if flip:
                f = f + model.image_encoder.predict(x[:, :, ::-1], batch_size=batch, verbose=0)
            out.append(f)
        return out

    t_bare_img, all_bare_img, maps = timed(bare_images, repeats)
    ref = np.zeros_like(feats_ours)
    for (index, _), m in zip(groups, maps):
        ref[index] = m.sum(axis=(1, 2))
    ref /= np.sqrt(1e-8 + np.sum(ref * ref, axis=1, keepdims=True))
    img_agree = float(np.abs(ref - feats_ours).max())
    passes = split.num_images * (2 if flip else 1)
    print(f"images, ours (Encoders.images from JPEG files): {t_ours_img:.3f} s "
          f"({passes / t_ours_img:.0f} encoder passes/s); runs {B.fmt_list(all_ours_img, 1, 3)} s")
    print(f"images, bare model.predict on {n_pixels * 4 / 2**20:.0f} MiB of cached tensors: "
          f"{t_bare_img:.3f} s; runs {B.fmt_list(all_bare_img, 1, 3)} s")
    print(f"images: max |ours − bare| of the L2-normalised features = {img_agree:.2e}")

    # --- texts --------------------------------------------------------------------------------
    t_ours_txt, all_ours_txt, t_feats = timed(
        lambda: enc.texts(split.tokens, split.lengths, progress=False), repeats)
    shifted, owner = expand_shifts(split.tokens, split.lengths, cfg.eval.all_shifts)
    t_bare_txt, all_bare_txt, t_maps = timed(
        lambda: model.text_encoder.predict(shifted, batch_size=batch * 8, verbose=0), repeats)
    t_ref = np.zeros((split.num_captions, t_maps.shape[1]), np.float64)
    np.add.at(t_ref, owner, t_maps.astype(np.float64))
    t_ref /= np.sqrt(1e-8 + np.sum(t_ref * t_ref, axis=1, keepdims=True))
    txt_agree = float(np.abs(t_ref - t_feats).max())
    print(f"texts, ours (Encoders.texts): {t_ours_txt:.3f} s for {len(shifted)} shifted captions "
          f"({len(shifted) / t_ours_txt:.0f}/s); runs {B.fmt_list(all_ours_txt, 1, 3)} s")
    print(f"texts, bare model.predict on the cached expanded shifts: {t_bare_txt:.3f} s; "
          f"runs {B.fmt_list(all_bare_txt, 1, 3)} s")
    print(f"texts: max |ours − bare| of the L2-normalised features = {txt_agree:.2e}")

    r_img = t_bare_img / t_ours_img
    r_txt = t_bare_txt / t_ours_txt
    r_all = (t_bare_img + t_bare_txt) / (t_ours_img + t_ours_txt)
    tag = f"flip={str(flip).lower()}"
    for name, r in (("images", r_img), ("texts", r_txt), ("images+texts", r_all)):
        print(f"RATIO eval encoding {name} ({tag}) bare/ours: {r:.3f}; goal ≥ {GOAL}: "
              f"{'met' if r >= GOAL else 'NOT met'}", flush=True)
    return {"images": r_img, "texts": r_txt, "all": r_all}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=B.DEFAULT_ROOT)
    ap.add_argument("--split", default="train", choices=["train", "val", "test"],
                    help="which split's images and captions to encode (train: the most work)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--copies", type=int, default=3, help="encode the split this many times over per timing")
    ap.add_argument("--flip", choices=["both", "on", "off"], default="both")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = ap.parse_args()

    print(B.versions())
    print(f"load average at start: {B.load_average()}")
    flips = {"both": (False, True), "on": (True,), "off": (False,)}[args.flip]
    for flip in flips:
        cfg = B.demo_config(args.root, [*args.set, f"eval.flip={str(flip).lower()}"])
        run(cfg, B.prepared(cfg), args.split, args.repeats, args.copies)
    print(f"load average at end: {B.load_average()}")


if __name__ == "__main__":
    main()
