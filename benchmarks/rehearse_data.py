"""Generated datasets in the real layouts and counts, for ``benchmarks/rehearse.py`` (not a benchmark itself).

:func:`generate` writes, under a data root, what the dataset readers of ``dpcnn.data.datasets``
expect (``mscoco.py``: the 2014 captions files, ``train2014/``/``val2014/`` and Karpathy's
``dataset_coco.json``; ``flickr30k.py``: the token file, the image folder and the Flickr8k
test/dev lists of the paper split; ``cuhk_pedes.py``: ``reid_raw.json`` and ``imgs/``), with small
JPEG files (32 × 32, a random colour with noise; the pipeline resizes them) and captions drawn from
a generated vocabulary, plus a word2vec binary file at ``word2vec/GoogleNews-vectors-negative300.bin``
that holds every caption word. A marker file per dataset (and one for the word vectors) records
what was written; a second call with the same sizes reuses the files.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

# dataset → full / smoke image counts (cuhk-pedes: images, person ids), caption length range (words).
SIZES = {
    "coco": {"full": dict(train2014=82_783, val2014=40_504, val=5_000, test=5_000),
             "smoke": dict(train2014=30, val2014=30, val=10, test=10), "words": (8, 16)},
    "flickr30k": {"full": dict(images=31_783, test=1_000, val=1_000), "smoke": dict(images=60, test=10, val=10),
                  "words": (8, 18)},
    "cuhk-pedes": {"full": dict(train=(34_054, 11_003), val=(3_078, 1_000), test=(3_074, 1_000)),
                   "smoke": dict(train=(40, 14), val=(10, 4), test=(10, 4)), "words": (15, 40)},
}
WORD2VEC = {"full": (10_000, 3_000_000, 300), "smoke": (400, 2_000, 300)}  # caption words, file words, dim
GALLERY = 20





def jpeg_pool(rng: np.random.Generator, count: int = 64, side: int = 32) -> list[bytes]:
    """``count`` small JPEG files' bytes: a random colour with noise each."""
    from PIL import Image

    pool = []
    for _ in range(count):
        pixels = rng.integers(0, 256, 3) + rng.normal(0, 20, (side, side, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=85)
        pool.append(buf.getvalue())
    return pool


def write_images(folder: Path, names: list[str], pool: list[bytes]) -> list[Path]:
    paths = [folder / n for n in names]
    for parent in {p.parent for p in paths}:
        parent.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(paths):
        path.write_bytes(pool[i % len(pool)])
    return paths


def vocabulary(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct lower-case words of 2-9 letters (no split character in them)."""
    words: dict[str, None] = {}
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    while len(words) < n:
        words.setdefault("".join(rng.choice(letters, rng.integers(2, 10))), None)
    return list(words)


def captions(rng: np.random.Generator, vocab: list[str], n: int, words: tuple[int, int]) -> list[str]:
    """``n`` captions of ``words`` = (fewest, most) words drawn with Zipf-like frequencies."""
    p = 1.0 / (np.arange(len(vocab)) + 10.0)
    lengths = rng.integers(words[0], words[1] + 1, n)
    tokens = np.asarray(vocab, dtype=object)[rng.choice(len(vocab), int(lengths.sum()), p=p / p.sum())]
    ends = np.cumsum(lengths)
    return [" ".join(tokens[e - k:e]) + " ." for e, k in zip(ends.tolist(), lengths.tolist())]


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def gen_coco(root: Path, size: dict, rng, vocab: list[str], pool: list[bytes]) -> tuple[list[Path], str]:
    """MSCOCO 2014 with Karpathy's split (mscoco.py's layout); (test image paths, a test caption)."""
    karpathy, test, next_id, sent = [], [], 1, 0
    for folder in ("train2014", "val2014"):
        ids = list(range(next_id, next_id + size[folder]))
        next_id += len(ids)
        names = [f"COCO_{folder}_{i:012d}.jpg" for i in ids]
        paths = write_images(root / "coco" / folder, names, pool)
        caps = captions(rng, vocab, len(ids) * 5, SIZES["coco"]["words"])
        write_json(root / "coco" / "annotations" / f"captions_{folder}.json", {
            "images": [{"id": i, "file_name": n, "height": 32, "width": 32} for i, n in zip(ids, names)],
            "annotations": [{"image_id": ids[k // 5], "id": sent + k, "caption": c} for k, c in enumerate(caps)]})
        for k, (i, name) in enumerate(zip(ids, names)):
            split = "train" if folder == "train2014" else (
                "val" if k < size["val"] else "test" if k < size["val"] + size["test"] else "restval")
            test += [(paths[k], caps[5 * k])] if split == "test" else []
            sentences = [{"raw": c, "tokens": c.split()[:-1], "imgid": len(karpathy), "sentid": sent + 5 * k + j}
                         for j, c in enumerate(caps[5 * k:5 * k + 5])]
            karpathy.append({"filepath": folder, "filename": name, "cocoid": i, "imgid": len(karpathy),
                             "split": split, "sentids": [s["sentid"] for s in sentences], "sentences": sentences})
        sent += len(caps)
    write_json(root / "karpathy" / "dataset_coco.json", {"images": karpathy, "dataset": "coco"})
    return [p for p, _ in test], test[0][1]


def gen_flickr30k(root: Path, size: dict, rng, vocab: list[str], pool: list[bytes]) -> tuple[list[Path], str]:
    """Flickr30k with the paper's split (token file + Flickr8k test/dev lists)."""
    names = [f"{1_000_000_000 + i}.jpg" for i in range(size["images"])]
    paths = write_images(root / "flickr30k" / "flickr30k-images", names, pool)
    caps = captions(rng, vocab, len(names) * 5, SIZES["flickr30k"]["words"])
    (root / "flickr30k" / "results_20130124.token").write_text(
        "".join(f"{names[k // 5]}#{k % 5}\t{c}\n" for k, c in enumerate(caps)))
    lists = {"test": names[:size["test"]], "dev": names[size["test"]:size["test"] + size["val"]]}
    for which, chosen in lists.items():
        (root / "flickr8k").mkdir(parents=True, exist_ok=True)
        (root / "flickr8k" / f"Flickr_8k.{which}Images.txt").write_text(
            "".join(f"{n[:-4]}_{i:010x}.jpg\n" for i, n in enumerate(chosen)))
    return paths[:size["test"]], caps[0]


def gen_cuhk(root: Path, size: dict, rng, vocab: list[str], pool: list[bytes]) -> tuple[list[Path], str]:
    """CUHK-PEDES: reid_raw.json (train, val, test blocks) and imgs/<file_path>."""
    entries, first_id = [], 1
    for split in ("train", "val", "test"):
        n_images, n_ids = size[split]
        caps = captions(rng, vocab, 2 * n_images, SIZES["cuhk-pedes"]["words"])
        for k in range(n_images):
            pid = first_id + k % n_ids
            entries.append({"split": split, "captions": caps[2 * k:2 * k + 2], "file_path": f"CUHK03/{pid}_{k}.jpg",
                            "id": pid, "processed_tokens": [c.split()[:-1] for c in caps[2 * k:2 * k + 2]]})
        first_id += n_ids
    write_json(root / "cuhk-pedes" / "reid_raw.json", entries)
    paths = write_images(root / "cuhk-pedes" / "imgs", [e["file_path"] for e in entries], pool)
    test = [i for i, e in enumerate(entries) if e["split"] == "test"]
    return [paths[i] for i in test], entries[test[0]]["captions"][0]


def write_word2vec(path: Path, words: list[str], n_words: int, dim: int, rng) -> None:
    """A word2vec binary file: ``words`` first, then fixed-width filler words, in chunks."""
    chunk = 100_000
    block = rng.standard_normal((chunk, dim), dtype=np.float32) * 0.1
    record = np.dtype([("word", "S10"), ("space", "S1"), ("vec", "<f4", (dim,)), ("nl", "S1")])
    tmp = path.with_suffix(".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as f:
        f.write(f"{n_words} {dim}\n".encode())
        f.write(b"".join(w.encode() + b" " + block[i % chunk].tobytes() + b"\n" for i, w in enumerate(words)))
        fill = n_words - len(words)
        for start in range(0, fill, chunk):
            recs = np.empty(min(chunk, fill - start), record)
            recs["word"] = np.char.encode(np.char.mod("Z%09d", np.arange(start, start + len(recs))))
            recs["space"], recs["vec"], recs["nl"] = b" ", block[:len(recs)], b"\n"
            f.write(recs.tobytes())
    tmp.replace(path)


def generate(dataset: str, root: Path, smoke: bool) -> dict:
    """Write the dataset and the word2vec file under ``root`` unless their markers say they are there."""
    mode = "smoke" if smoke else "full"
    spec = json.loads(json.dumps({"dataset": dataset, "sizes": SIZES[dataset][mode], "word2vec": WORD2VEC[mode],
                                  "version": 1}))  # as the marker holds it (lists, not tuples)
    marker, w2v_marker = root / f".rehearsal-{dataset}.json", root / "word2vec" / ".rehearsal.json"
    n_vocab, n_words, dim = WORD2VEC[mode]
    vocab = vocabulary(np.random.default_rng(0), n_vocab)
    reused = []
    if marker.is_file() and json.loads(marker.read_text())["spec"] == spec:
        reused.append(dataset)
        info = json.loads(marker.read_text())
    else:
        marker.unlink(missing_ok=True)  # written last: a generation cut short is never taken as complete
        gen = {"coco": gen_coco, "flickr30k": gen_flickr30k, "cuhk-pedes": gen_cuhk}[dataset]
        rng = np.random.default_rng(1)
        test, caption = gen(root, SIZES[dataset][mode], rng, vocab, jpeg_pool(rng))
        info = {"spec": spec, "test_images": [str(p) for p in test[:GALLERY]], "caption": caption}
        write_json(marker, info)
    if w2v_marker.is_file() and json.loads(w2v_marker.read_text()) == spec["word2vec"]:
        reused.append("word2vec")
    else:
        w2v_marker.unlink(missing_ok=True)
        write_word2vec(root / "word2vec" / "GoogleNews-vectors-negative300.bin", vocab, n_words, dim,
                       np.random.default_rng(2))
        write_json(w2v_marker, spec["word2vec"])
    return {"reused": reused, **info}
