"""The export format and ``dpcnn.load``: a trained model as a folder anyone can load and use
(``dpcnn export``: :mod:`dpcnn.commands.export`).

    EXPORT/image_features.keras   pixels float [B, H, W, 3], RGB 0-255, any size → [B, D] final embedding
    EXPORT/text_features.keras    tokens int32 [B, L] (ids of vocab.json, 0 = empty) → [B, D]
    EXPORT/vocab.json             the dictionary and its tokenisation settings
    EXPORT/captions.txt           the model's training captions (the default alt-text corpus)
    EXPORT/export.json            what it is: stage, run, config name, sizes, pixel mean, a digest
    EXPORT/config.json            the run's configuration
    EXPORT/README.md              a five-line example

The two ``.keras`` files are the test-time feature models of :mod:`dpcnn.model.features`: the
pre-resize, the flip, the spatial sum, every position shift and the L2 normalisation are inside,
so ``features @ features.T`` is the cosine the paper ranks by. They load in Keras' safe mode once
``dpcnn.model.layers`` is imported (it registers the custom layers).
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
from pathlib import Path

from dpcnn.errors import RunError
from dpcnn.run import CAPTIONS, CONFIG, VOCAB  # the run folder's names, kept in an export
from dpcnn.utils import atomic_save, atomic_write_json, atomic_write_text, read_json, sha256_files

log = logging.getLogger(__name__)

IMAGE_MODEL, TEXT_MODEL = "image_features.keras", "text_features.keras"
INFO, README = "export.json", "README.md"  # and the run folder's VOCAB, CAPTIONS, CONFIG
FORMAT = "dpcnn-export"
VERSION = 1


def write_export(run, out: str | Path, stage: int) -> list[Path]:
    """Write the files of the module docstring for ``stage`` of ``run`` (a :class:`dpcnn.run.Run`)
    into ``out``; returns them. Needs only the run folder (weights, vocab.json, inference.json,
    config.json)."""
    embedder = run.embedder(stage)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save(out / IMAGE_MODEL, embedder.image_model.save)
    atomic_save(out / TEXT_MODEL, embedder.text_model.save)
    run.vocab.save(out / VOCAB)
    if run.captions_path.is_file():
        shutil.copyfile(run.captions_path, out / CAPTIONS)
    run.config.save(out / CONFIG)
    cfg, run_info = run.config, run.inference_info
    info = {
        "format": FORMAT, "version": VERSION, "stage": stage, "run": str(run.path.resolve()), "config": cfg.name,
        "dataset": cfg.data.dataset, "embed_dim": embedder.dim, "max_len": embedder.max_len,
        "vocab_size": len(run.vocab), "pixel_mean": run_info["pixel_mean"],
        "test_features": {"resize_shorter": cfg.data.resize_shorter, "resize_square": cfg.data.resize_square,
                          "image_mode": cfg.eval.image_mode, "flip": cfg.eval.flip, "all_shifts": cfg.eval.all_shifts},
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "digest": sha256_files(out / IMAGE_MODEL, out / TEXT_MODEL, out / VOCAB)[:20],
    }
    atomic_write_json(out / INFO, info)
    atomic_write_text(out / README, readme_text(info))
    return [out / n for n in (IMAGE_MODEL, TEXT_MODEL, VOCAB, CAPTIONS, INFO, CONFIG, README) if (out / n).exists()]


def readme_text(info: dict) -> str:
    """EXPORT/README.md: what the files are and how to use them."""
    t = info["test_features"]
    resize = ("kept at its size" if t["resize_shorter"] <= 0 else
              f"resized to {t['resize_shorter']}×{t['resize_shorter']}" if t["resize_square"] else
              f"resized so that its shorter side is {t['resize_shorter']} px")
    return f"""# dpcnn model: {info['config']}, stage {info['stage']}

Dual-Path CNN image-text embedding (Zheng et al., arXiv 1711.05535) exported from `{info['run']}`
on {info['date']}. Images and captions map to the same {info['embed_dim']}-d space; the score of a
pair is the dot product of their embeddings (a cosine: every embedding has unit length).

```python
import dpcnn

model = dpcnn.load("path/to/this/folder")
images = model.encode_images(["photo1.jpg", "photo2.png"])   # or RGB arrays, 0-255
texts = model.encode_texts(["a red circle above a blue square"])
print(model.search(texts[0], images, k=2))                   # [(score, index)], best first
```

From the command line: `dpcnn search --model path/to/this/folder --text "…" --gallery PHOTOS/`,
`dpcnn alt-text --model path/to/this/folder --images PHOTOS/ --out alt.csv`.

| file | what |
|---|---|
| `{IMAGE_MODEL}` | pixels float [B, H, W, 3] (RGB 0-255, any size) → embedding [B, {info['embed_dim']}]: the image is {resize}, its `fc1_1bn` map summed over positions{', plus its mirror image' if t['flip'] else ''}, L2-normalised |
| `{TEXT_MODEL}` | tokens int32 [B, {info['max_len']}] (ids of `{VOCAB}`, 0 = empty slot, left-aligned) → embedding [B, {info['embed_dim']}]: `fc5_2bn` summed over {'every valid position shift' if t['all_shifts'] else 'the left-aligned caption'}, L2-normalised |
| `{VOCAB}` | the {info['vocab_size']} words (`words[i]` has id i + 1) and the tokenisation (`split_chars`, `lowercase`); out-of-vocabulary words are dropped |
| `{CAPTIONS}` | the captions the model was trained with (alt text retrieves from these by default) |
| `{INFO}`, `{CONFIG}` | sizes, the pixel mean (subtracted inside the image model: give raw pixels), the run's configuration |

The `.keras` files also load on their own with `keras.saving.load_model(path, safe_mode=True)`
after `import dpcnn.model.layers` (which registers the custom layers). Alt text retrieves the nearest existing captions; it does not
write new sentences.
"""


def is_export(path: str | Path) -> bool:
    return (Path(path) / INFO).is_file()


def load_export(path: str | Path, batch_size: int = 32):
    """An :class:`dpcnn.embedder.Embedder` from an export folder (safe mode, nothing else needed)."""
    import keras

    import dpcnn.model.layers  # noqa: F401  (registers the custom layers)
    from dpcnn.data.vocab import Vocabulary
    from dpcnn.embedder import Embedder

    path = Path(path)
    missing = [n for n in (IMAGE_MODEL, TEXT_MODEL, VOCAB, INFO) if not (path / n).is_file()]
    if missing:
        raise RunError(f"{path} is not a complete dpcnn export (missing {', '.join(missing)}): "
                       f"export a run again with `dpcnn export --run DIR --out {path}`")
    info = read_json(path / INFO)
    if info.get("format") != FORMAT or info.get("version") != VERSION:
        raise RunError(f"{path / INFO} is not a dpcnn export of format version {VERSION}: export the run again")
    embedder = Embedder(keras.saving.load_model(str(path / IMAGE_MODEL), safe_mode=True),
                        keras.saving.load_model(str(path / TEXT_MODEL), safe_mode=True),
                        Vocabulary.load(path / VOCAB), batch_size, identity=f"export-{info['digest']}",
                        captions_file=path / CAPTIONS if (path / CAPTIONS).is_file() else None)
    return embedder


def load(path: str | os.PathLike, stage: int | None = None, batch_size: int = 32):
    """The model in ``path``: an export folder, or a run folder (its last finished stage, or ``stage``).

    Returns an :class:`dpcnn.embedder.Embedder`: ``encode_images``, ``encode_texts``, ``search``.
    """
    if is_export(path):
        return load_export(path, batch_size)
    if not Path(path).exists():
        raise RunError(f"model folder {path} does not exist: give an export folder (`dpcnn export`) or a run folder "
                       "(`dpcnn train`)")
    from dpcnn.run import Run

    return Run.open(path).embedder(stage)
