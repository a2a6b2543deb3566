"""Every user error through the command line: one line on stderr, ``dpcnn <command>: error: …``,
exit status 2, no traceback (DESIGN §1). Per-item problems of a dataset are counted exclusions
(tests/test_prepare.py); here are the ones that stop a command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT
from PIL import Image

from dpcnn.cli import main


@pytest.fixture()
def own_data(tmp_path):
    """A valid COCO-format dataset of 30 images (captions in one file) and its word vectors."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    entries, anns = [], []
    for i in range(30):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(images / f"{i}.jpg")
        entries.append({"id": i, "file_name": f"{i}.jpg"})
        anns += [{"id": 10 * i + k, "image_id": i, "caption": c} for k, c in enumerate(["a red circle", "a blue square"])]
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"images": entries, "annotations": anns}))
    words = ["a", "red", "blue", "circle", "square"]
    vectors = tmp_path / "vectors.txt"
    vectors.write_text(f"{len(words)} 4\n" + "\n".join(f"{w} " + " ".join(f"{x:.3f}" for x in rng.normal(size=4))
                                                     for w in words) + "\n")
    overrides = [f"data.root={tmp_path}", f"data.annotations={captions}", f"data.images={images}",
                 f"data.word_vectors={vectors}"]
    return tmp_path, overrides, captions, vectors


def one_line_error(capsys, command: str) -> str:
    """The one error line (the rest of stderr is log lines and progress bars); no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error" in line.lower() and not re.match(r"^\d\d:\d\d:\d\d ", line)]
    assert len(lines) == 1 and lines[0].startswith(f"dpcnn {command}: error: "), err
    return lines[0]


@pytest.mark.parametrize("broken, expected", [
    ('{"images": [{"id": 1, "file_name": "1.jpg"}], "annotations": [', "not a valid JSON"),
    ('[{"id": 1}]', "JSON object"),
    ('{"images": [{"id": 1, "file_name": "1.jpg"}, {"id": 1, "file_name": "2.jpg"}], "annotations": []}', "twice"),
])
def test_malformed_captions_files(own_data, capsys, broken, expected):
    root, overrides, captions, _ = own_data
    captions.write_text(broken)
    assert main(["prepare", "--config", "tiny", "--set", *overrides]) == 2
    err = one_line_error(capsys, "prepare")
    assert expected in err and "captions.json" in err


def test_bad_word_vector_file(own_data, capsys):
    root, overrides, _, vectors = own_data
    vectors.write_text("5 4\na 0.1 0.2\n")
    assert main(["prepare", "--config", "tiny", "--set", *overrides]) == 2
    assert "vectors.txt" in one_line_error(capsys, "prepare")


@pytest.mark.parametrize("argv, command, expected", [
    (["prepare", "--config", "tiny", "--set", "train.batchsize=4"], "prepare", "did you mean train.batch_size"),
    (["prepare", "--config", "demo", "--set", "data.images=/x"], "prepare", "data.dataset=coco-format"),
    (["prepare", "--config", "missing.json"], "prepare", "does not exist"),
    (["prepare", "--config", "coco", "--set", "data.root=/nonexistent-root"], "prepare", "dpcnn download karpathy-splits"),
    (["eval", "--run", "/nonexistent/run"], "eval", "does not exist"),
    (["export", "--run", "/nonexistent/run", "--out", "/nonexistent/export"], "export", "does not exist"),
    (["search", "--model", "/nonexistent/model", "--text", "a red circle"], "search", "does not exist"),
    (["download", "imagenet"], "download", "unknown download 'imagenet'"),
])
def test_user_errors_of_every_command(capsys, argv, command, expected):
    assert main(argv) == 2
    assert expected in one_line_error(capsys, command)


def test_a_run_folder_that_cannot_be_written_and_a_broken_config(own_data, tmp_path, capsys):
    root, overrides, _, _ = own_data
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["train", "--config", "tiny", "--run", str(blocker / "run"), "--set", *overrides]) == 2
    assert "a-file" in one_line_error(capsys, "train")
    broken = tmp_path / "broken-run"
    broken.mkdir()
    (broken / "config.json").write_text("{oops")
    (broken / "stage2").mkdir()
    (broken / "stage2" / "done.json").write_text("{}")
    (broken / "stage2" / "model.weights.h5").write_bytes(b"")
    assert main(["eval", "--run", str(broken)]) == 2
    assert "not valid JSON" in one_line_error(capsys, "eval")


def test_a_real_process_prints_one_line_and_exits_2(own_data):
    root, overrides, captions, _ = own_data
    captions.write_text("{truncated")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "dpcnn", "prepare", "--config", "tiny", "--set", *overrides],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower() and "cuda" not in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("dpcnn prepare: error:") and "Traceback" not in done.stderr


def test_help_imports_no_tensorflow():
    done = subprocess.run([sys.executable, "-c", "import sys; from dpcnn.cli import build_parser; build_parser(); "
                           "from dpcnn.presets import resolve; resolve('coco'); print('tensorflow' in sys.modules)"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout.strip() == "False", done.stderr[-2000:]


def test_files_are_written_with_the_user_s_umask(tmp_path):
    from dpcnn.utils import atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644
