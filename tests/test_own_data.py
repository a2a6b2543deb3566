"""The README's own-data recipe end to end: one COCO-format captions file (or a CSV) with bad items,
``prepare`` → ``train`` → ``eval`` through the command line, as the Makefile targets call it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT

from dpcnn.cli import main


@pytest.fixture(scope="module")
def own_files(tiny_data, tmp_path_factory):
    """The tiny training + test images as a user's folder, one captions file with bad items, and a CSV."""
    root = tmp_path_factory.mktemp("own")
    images = root / "photos"
    images.mkdir()
    entries, anns, rows = [], [], ["image,caption"]
    for split in ("train", "val", "test"):
        s = tiny_data.splits[split]
        for i, path in enumerate(s.paths):
            name = f"{split}-{i}.jpg"
            shutil.copy(path, images / name)
            image_id = len(entries) + 1
            entries.append({"id": image_id, "file_name": name})
            for c in (c for c, owner in zip(s.captions, s.caption_image) if owner == i):
                anns.append({"id": len(anns) + 1, "image_id": image_id, "caption": c})
                rows.append(f'{name},"{c}"')
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    entries.append({"id": 999, "file_name": "broken.jpg"})
    anns += [{"id": 5000, "image_id": 999, "caption": "a red circle"},      # a corrupt image
             {"id": 5001, "image_id": 12345, "caption": "an orphan caption"},  # an unknown image id
             {"id": 5002, "image_id": 1, "caption": 42}]                       # a caption that is not a string
    captions = root / "captions.json"
    captions.write_text(json.dumps({"images": entries, "annotations": anns}))
    (root / "captions.csv").write_text("\n".join(rows + ["missing-caption.jpg,"]) + "\n")
    return root, images, captions, Path(tiny_data.report["word_vectors"])


def recipe(root, images, annotations, vectors):
    return [f"data.root={root}", f"data.annotations={annotations}", f"data.images={images}",
            f"data.word_vectors={vectors}"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["captions.json", "captions.csv"])
def test_prepare_train_eval_on_your_own_captions_file(own_files, tmp_path, capsys, kind):
    root, images, captions, vectors = own_files
    overrides = recipe(root, images, root / kind, vectors)
    assert main(["prepare", "--config", "tiny", "--set", *overrides]) == 0
    out = capsys.readouterr().out
    assert "excluded:" in out
    run = tmp_path / "mine"
    assert main(["train", "--config", "tiny", "--run", str(run), "--set", *overrides]) == 0
    report = json.loads((run / "data_report.json").read_text())
    assert report["dataset"] == ("csv" if kind.endswith(".csv") else "coco-format")
    counts = report["excluded_counts"]
    if kind.endswith(".json"):
        assert counts == {"corrupt image": 1, "caption of an unknown image id": 1, "caption is not a string": 1}
    else:
        assert counts == {"row without an image or a caption": 1}
    n = sum(report["counts"][s]["images"] for s in ("train", "val", "test"))
    assert report["counts"]["test"]["images"] == report["counts"]["val"]["images"] == max(1, min(1000, int(0.1 * n)))
    assert main(["eval", "--run", str(run)]) == 0
    result = json.loads((run / "metrics.json").read_text())
    assert result["full"]["num_images"] == report["counts"]["test"]["images"]


def test_make_targets_are_the_recipe_s_commands(own_files):
    root, images, captions, vectors = own_files
    settings = " ".join(recipe(root, images, captions, vectors))
    for target, expected in (("prepare", f"dpcnn prepare --config coco --set {settings}"),
                             ("train", f"dpcnn train --config coco --run runs/mine --set {settings}"),
                             ("eval", "dpcnn eval --run runs/mine --split test")):
        done = subprocess.run(["make", "-n", "-W", "setup.cfg", target, "CONFIG=coco", "RUN=runs/mine",
                               f"SET={settings}"], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert any(line.strip().endswith(expected) for line in done.stdout.splitlines()), done.stdout
