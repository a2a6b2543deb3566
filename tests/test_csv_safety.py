"""No formula in a spreadsheet cell: every CSV dpcnn writes passes its cells through
:func:`dpcnn.utils.spreadsheet_safe` (OWASP, "CSV Injection").

The CSV writers of the package: ``dpcnn alt-text``'s ``alt.csv`` (:func:`dpcnn.alt_text.write_csv`:
captions from a user's ``--captions`` file, paths, URLs and error messages — free text) and the run's
``history.csv`` (Keras' CSVLogger, and :func:`dpcnn.training.trainer.trim_history` rewriting its rows:
epoch numbers, metric values and the metric names of dpcnn's own code — numbers only, nothing a user
writes, so it is left as Keras writes it).
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pytest

from dpcnn.alt_text import COLUMNS, write_csv
from dpcnn.cli import main
from dpcnn.utils import spreadsheet_safe


@pytest.mark.parametrize("cell, expected", [
    ("=1+1 red square", "'=1+1 red square"),
    ("+1 red square", "'+1 red square"),
    ("-1 red square", "'-1 red square"),
    ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
    ("\tred square", "'\tred square"),
    ("\rred square", "'\rred square"),
    ('=HYPERLINK("http://example.invalid","x")', '\'=HYPERLINK("http://example.invalid","x")'),
    ("-2+3", "'-2+3"),  # a sum, not a number
    ("-inf", "'-inf"),
    ("-", "'-"),
    ("-0.25\n=1+1", "'-0.25\n=1+1"),  # a number on the first line only
    # plain numbers are numbers to a spreadsheet: they run nothing and stay as they are
    ("-0.25", "-0.25"), ("+3", "+3"), ("-1e-05", "-1e-05"), ("-.5", "-.5"), ("0.9500", "0.9500"),
    # text that does not start a formula, and values that are not strings
    ("a red square = a red box", "a red square = a red box"), (" =1+1", " =1+1"), ("", ""),
    (-0.25, -0.25), (3, 3), (None, None),
])
def test_spreadsheet_safe(cell, expected):
    assert spreadsheet_safe(cell) == expected


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_write_csv_neutralises_free_text_and_keeps_scores_numbers(tmp_path):
    rows = [
        {"path": "/photos/a.jpg", "rank": 1, "caption": "=1+1 red square", "score": "-0.2500", "error": ""},
        {"path": "/photos/a.jpg", "rank": 2, "caption": "@SUM(1,2) blue circle, \"big\"", "score": -0.25, "error": ""},
        {"path": "/photos/a.jpg", "rank": 3, "caption": "a red square", "score": "0.9000", "error": ""},
        {"path": "=cmd|'/c calc'!A1", "rank": "", "caption": "", "score": "", "error": "-missing image file"},
    ]
    out = write_csv(rows, tmp_path / "alt.csv")
    got = read_rows(out)
    assert list(got[0]) == list(COLUMNS)
    assert [r["caption"] for r in got] == ["'=1+1 red square", "'@SUM(1,2) blue circle, \"big\"", "a red square", ""]
    assert [r["score"] for r in got] == ["-0.2500", "-0.25", "0.9000", ""]
    assert float(got[0]["score"]) == -0.25 and float(got[1]["score"]) == -0.25  # still numbers
    assert got[3]["path"] == "'=cmd|'/c calc'!A1" and got[3]["error"] == "'-missing image file"
    assert [r["rank"] for r in got] == ["1", "2", "3", ""]
    # No cell of the file, as a spreadsheet would split it, starts a formula unless it is a plain number.
    for row in csv.reader(open(out, newline="", encoding="utf-8")):
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or re.fullmatch(r"[+-][0-9.e-]+", cell), cell


def test_alt_text_with_a_formula_in_the_captions_file(tiny_run, tiny_data, tmp_path):
    """The case of the issue: `=1+1 red square` in a --captions file came out first character `=`."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, path in enumerate(tiny_data.splits["test"].paths[:2]):
        shutil.copy(path, photos / f"photo{i}.jpg")
    captions = tmp_path / "reviews.txt"
    captions.write_text("=1+1 red square\n-5 blue circle\n")
    out = tmp_path / "alt.csv"
    assert main(["alt-text", "--run", str(run), "--images", str(photos), "--captions", str(captions),
                 "--out", str(out), "--k", "2"]) == 0
    rows = read_rows(out)
    assert len(rows) == 4 and not any(r["error"] for r in rows)
    assert {r["caption"] for r in rows} == {"'=1+1 red square", "'-5 blue circle"}
    for r in rows:
        assert -1.0 <= float(r["score"]) <= 1.0 and not r["score"].startswith("'")  # cosines stay numbers
