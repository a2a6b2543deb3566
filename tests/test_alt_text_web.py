"""``dpcnn alt-text`` for a website (``--page``, ``--urls``) against a local HTTP server on 127.0.0.1.

The server serves a shop page whose ``<img>`` cover every case: no alt with a relative ``src``, an
empty alt with a ``srcset`` (the largest candidate is fetched), a lazy ``data-src``, an inline
``data:`` URI, an ``.svg`` and an SVG by content type, a 404, an answer slower than the timeout, a
file over the byte limit (with and without ``Content-Length``), a ``text/html`` answer at an image
URL, bytes that are not an image, and an ``<img>`` that already has alt text (left alone, never
fetched). Parsing, fetching and the cache are tested without TensorFlow; the end-to-end cases run
``dpcnn.cli.main`` on the tiny run. Nothing here contacts the internet.
"""

from __future__ import annotations

import csv
import io
import random
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import reference_run_features, serving
from PIL import Image

from dpcnn.web_images import (
    FetchLimits,
    fetch_images,
    images_without_alt,
    largest_candidate,
    parse_srcset,
    read_page,
    read_url_csv,
)

TIMEOUT = 0.5
SLOW = 1.5  # seconds the slow image waits before answering: past TIMEOUT
MAX_BYTES = 20_000
HUGE = random.Random(0).randbytes(60_000)


def _png(colour: tuple[int, int, int], size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Shop</title></head><body>
<h1>Our shapes</h1>
<img src="img/red.png" class="hero">
<img alt="" srcset="img/small.png 100w, img/big.png 400w, img/mid.png 200w" src="img/fallback.png">
<img data-src="/assets/lazy.png" src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">
<img alt="  " src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk">
<img src="img/logo.svg">
<img src="img/icon">
<img src="img/gone.png">
<img src="img/slow.png">
<img src="img/huge.png">
<img src="img/stream.png">
<img src="img/page.png">
<img src="img/notes.png">
<p>Already described: <img src="img/kept.png" alt="A kept description"></p>
</body></html>
"""

GOOD = {"/site/img/red.png": (215, 25, 30), "/site/img/big.png": (30, 60, 200), "/assets/lazy.png": (30, 160, 40)}
"""The images that are fetched and read."""

EXPECTED_ERRORS = {
    "data:image/png;base64,iVBORw0KGgoAAAA...": "inline image (data: URI, not fetched)",
    "/site/img/logo.svg": "SVG not supported (the model reads raster images)",
    "/site/img/icon": "SVG not supported (the model reads raster images)",
    "/site/img/gone.png": "HTTP 404 (Not Found)",
    "/site/img/slow.png": f"timed out (after {TIMEOUT:g} s)",
    "/site/img/huge.png": f"too large ({len(HUGE)} bytes, over the limit of {MAX_BYTES})",
    "/site/img/stream.png": f"too large (over the limit of {MAX_BYTES} bytes)",
    "/site/img/page.png": "not an image (Content-Type text/html)",
}
"""image URL (a path on the server, or the shortened data: URI) → the reason in its row, before decoding."""

NEVER_REQUESTED = {"/site/img/kept.png", "/site/img/small.png", "/site/img/mid.png", "/site/img/fallback.png",
                   "/site/img/logo.svg"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, dict] = {}
        self.requests: list[str] = []
        self.lock = threading.Lock()

    def add(self, path: str, body: bytes, ctype: str, status: int = 200, sleep: float = 0.0, length: bool = True) -> str:
        self.routes[path] = {"body": body, "ctype": ctype, "status": status, "sleep": sleep, "length": length}
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_port}{path}"

    def take_requests(self) -> list[str]:
        with self.lock:
            taken, self.requests = self.requests, []
        return taken


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        with self.server.lock:
            self.server.requests.append(self.path)
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        time.sleep(route["sleep"])
        try:
            self.send_response(route["status"])
            self.send_header("Content-Type", route["ctype"])
            if route["length"]:
                self.send_header("Content-Length", str(len(route["body"])))
            else:
                self.close_connection = True
            self.end_headers()
            self.wfile.write(route["body"])
        except OSError:  # the client gave up (the slow answer)
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    with serving(_Server()) as srv:
        yield _serve_site(srv)


def _serve_site(srv):
    """The test site's routes on ``srv``."""
    srv.add("/site/index.html", PAGE.encode(), "text/html; charset=utf-8")
    for path, colour in GOOD.items():
        srv.add(path, _png(colour), "image/png")
    for name in ("small", "mid", "fallback", "kept"):
        srv.add(f"/site/img/{name}.png", _png((0, 0, 0)), "image/png")
    srv.add("/site/img/logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")
    srv.add("/site/img/icon", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")
    srv.add("/site/img/slow.png", _png((1, 2, 3)), "image/png", sleep=SLOW)
    srv.add("/site/img/huge.png", HUGE, "image/png")
    srv.add("/site/img/stream.png", HUGE, "image/png", length=False)
    srv.add("/site/img/page.png", b"<html><body>Sign in</body></html>", "text/html")
    srv.add("/site/img/notes.png", b"hello, these are notes", "image/png")
    return srv


def _path(url: str) -> str:
    """A server URL's path (other URLs as they are)."""
    return "/" + url.split("/", 3)[3] if url.startswith("http://127.0.0.1") else url


LIMITS = FetchLimits(timeout=TIMEOUT, max_bytes=MAX_BYTES)


# --------------------------------------------------------------------------------------------
# Without TensorFlow: parsing, fetching, the cache
# --------------------------------------------------------------------------------------------


def test_web_images_imports_no_tensorflow():
    code = "import sys, dpcnn.web_images; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_srcset_candidates_and_the_largest():
    assert parse_srcset("a.jpg 480w, b.jpg 800w") == [("a.jpg", "w", 480.0), ("b.jpg", "w", 800.0)]
    # no descriptor is 1x; a URL may hold a comma; a trailing comma ends a candidate; a bad descriptor ranks last
    assert parse_srcset("a.jpg, b.jpg 2x, c,d.jpg 3x , e.jpg 10h") == [
        ("a.jpg", "x", 1.0), ("b.jpg", "x", 2.0), ("c,d.jpg", "x", 3.0), ("e.jpg", "x", 0.0)]
    assert largest_candidate("s.png 100w, b.png 400w, m.png 200w") == "b.png"
    assert largest_candidate("one.png, two.png 2x, half.png 0.5x") == "two.png"
    assert largest_candidate("x.png 3x, w.png 300w") == "w.png"  # widths, where given, decide
    assert largest_candidate(" , ") == ""


def test_a_page_s_images_without_alt_resolved_against_the_page(server):
    page = read_page(server.url("/site/index.html"), LIMITS)
    refs, with_alt = images_without_alt(page)
    assert with_alt == 1  # the kept <img> is neither listed nor fetched
    assert page.url == server.url("/site/index.html") and not page.local
    got = [(_path(r.image_url), r.reason) for r in refs]
    assert got == [
        ("/site/img/red.png", ""),                         # relative src
        ("/site/img/big.png", ""),                         # alt="" with srcset: the widest candidate
        ("/assets/lazy.png", ""),                          # data-src over its data: placeholder
        ("data:image/png;base64,iVBORw0KGgoAAAA...", "inline image (data: URI, not fetched)"),
        ("/site/img/logo.svg", "SVG not supported (the model reads raster images)"),
        ("/site/img/icon", ""),                            # an SVG known only by its Content-Type
        ("/site/img/gone.png", ""), ("/site/img/slow.png", ""), ("/site/img/huge.png", ""),
        ("/site/img/stream.png", ""), ("/site/img/page.png", ""), ("/site/img/notes.png", ""),
    ]
    assert all(r.page_url == page.url and r.tag is not None for r in refs)


def test_a_local_page_resolves_images_against_its_file_and_its_base(tmp_path):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(_png((9, 9, 9)))
    html = tmp_path / "page.html"
    html.write_text('<img src="pics/a.png"><img src="pics/none.png" alt=""><img src="https://cdn.example/x.png">'
                    '<img src="/abs.png" alt="kept">')
    page = read_page(str(html), LIMITS)
    refs, with_alt = images_without_alt(page)
    assert page.local and page.url == str(html) and with_alt == 1
    fetched, now = fetch_images([r.image_url for r in refs[:2]], tmp_path / "cache", LIMITS, allow_files=True)
    assert now == 0  # local files are read in place
    assert fetched[refs[0].image_url] == (str(tmp_path / "pics" / "a.png"), "")
    assert fetched[refs[1].image_url] == ("", "missing image file")
    assert refs[2].image_url == "https://cdn.example/x.png" and refs[2].reason == ""
    based = tmp_path / "based.html"
    based.write_text('<head><base href="https://shop.example/en/"></head><img src="p.png"><img src="/q.png">')
    assert [r.image_url for r in images_without_alt(read_page(str(based), LIMITS))[0]] == [
        "https://shop.example/en/p.png", "https://shop.example/q.png"]
    # a remote page's file: images are not read
    fetched, _ = fetch_images(["file:///etc/hostname"], tmp_path / "cache", LIMITS, allow_files=False)
    assert fetched["file:///etc/hostname"][1].startswith("unsupported URL scheme (file)")


def test_fetching_gives_each_bad_answer_its_reason_and_caches_the_good_ones(server, tmp_path):
    urls = [server.url(p) for p in (*GOOD, "/site/img/icon", "/site/img/gone.png", "/site/img/slow.png",
                                    "/site/img/huge.png", "/site/img/stream.png", "/site/img/page.png")]
    cache = tmp_path / "cache"
    started = time.monotonic()
    fetched, now = fetch_images(urls, cache, LIMITS)
    assert time.monotonic() - started < SLOW + 5  # the slow answer is abandoned at the timeout
    assert now == len(urls)
    for url in urls:
        path, reason = fetched[url]
        if _path(url) in GOOD:
            assert reason == "" and Path(path).parent == cache and Path(path).suffix == ".png"
            assert Path(path).read_bytes() == _png(GOOD[_path(url)])
        else:
            assert (path, reason) == ("", EXPECTED_ERRORS[_path(url)]), url
    server.take_requests()
    again, now = fetch_images(urls, cache, LIMITS)
    asked = server.take_requests()
    assert not set(asked) & set(GOOD)  # cached: not requested again
    assert sorted(asked) == sorted(_path(u) for u in urls if _path(u) not in GOOD)  # failures are tried again
    assert now == len(urls) - len(GOOD) and again == fetched


def test_a_page_that_cannot_be_read_is_one_error(server):
    from dpcnn.errors import DownloadError

    with pytest.raises(DownloadError, match=r"cannot read the page .*: HTTP 404"):
        read_page(server.url("/site/missing.html"), LIMITS)
    with pytest.raises(DownloadError, match=r"not an HTML page \(Content-Type image/png\)"):
        read_page(server.url("/site/img/red.png"), LIMITS)
    with pytest.raises(DownloadError, match="too large"):
        read_page(server.url("/site/index.html"), FetchLimits(timeout=TIMEOUT, max_bytes=100))


def test_a_crawl_csv_gives_one_ref_per_row_with_its_page(server, tmp_path):
    listing = tmp_path / "crawl.csv"
    page = server.url("/site/index.html")
    listing.write_text("Source,Destination,Alt Text\n"
                       f"{page},img/red.png,\n"               # relative: against the page
                       f"{page},{server.url('/assets/lazy.png')},\n"
                       f"{page},,\n"                          # an empty cell
                       ",rel.png,\n"                          # relative with no page
                       f'{page},"data:image/png;base64,AAAA",\n')
    refs, page_column = read_url_csv(listing, "Destination")
    assert page_column == "Source"
    assert [(r.page_url, _path(r.image_url), r.reason) for r in refs] == [
        (page, "/site/img/red.png", ""),
        (page, "/assets/lazy.png", ""),
        (page, "", "empty Destination cell (line 4)"),
        ("", "rel.png", "relative URL with no http(s) page URL to resolve it against"),
        (page, "data:image/png;base64,AAAA", "inline image (data: URI, not fetched)"),
    ]
    from dpcnn.errors import SearchError

    with pytest.raises(SearchError, match=r"--url-column 'url' is not a column of .*\(columns: Source, Destination, Alt Text\)"):
        read_url_csv(listing, "url")
    with pytest.raises(SearchError, match=r"--urls needs --url-column NAME.*Source, Destination"):
        read_url_csv(listing, None)


# --------------------------------------------------------------------------------------------
# End to end on the tiny run
# --------------------------------------------------------------------------------------------

CAPTIONS = ['a "red" square <b>above</b> a blue circle', 'a blue circle & a "green" star </script>']


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_alt_text_for_a_page_writes_rows_reasons_and_the_patched_page(tiny_run, server, tmp_path, capsys):
    from bs4 import BeautifulSoup

    from dpcnn.cli import main

    captions = tmp_path / "captions.txt"
    captions.write_text("\n".join(CAPTIONS) + "\n")
    out, patched = tmp_path / "out" / "alt.csv", tmp_path / "out" / "index.html"
    argv = ["alt-text", "--run", str(tiny_run), "--page", server.url("/site/index.html"), "--out", str(out),
            "--captions", str(captions), "--k", "2", "--timeout", str(TIMEOUT), "--max-bytes", str(MAX_BYTES),
            "--html", "--write-html", str(patched)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "13 <img> on" in printed and "1 already have alt text" in printed and "12 have none or an empty one" in printed
    assert ("3 images with 2 suggestion(s) each" in printed and "9 could not be read" in printed
            and "2 SVG not supported" in printed and "1 HTTP 404" in printed and "1 timed out" in printed
            and "2 too large" in printed and "2 not an image" in printed)
    assert "10 distinct image URLs: 10 fetched now, 0 from the cache" in printed
    assert "3 empty alt filled" in printed
    first = server.take_requests()
    assert not set(first) & NEVER_REQUESTED

    rows = _rows(out)
    assert list(rows[0]) == ["page_url", "image_url", "path", "rank", "caption", "score", "error"]
    assert {r["page_url"] for r in rows} == {server.url("/site/index.html")}
    errors = {_path(r["image_url"]): r["error"] for r in rows if r["error"]}
    assert errors == {**EXPECTED_ERRORS, "/site/img/notes.png": "not an image (text starting 'hello, these are notes')"}
    good = [r for r in rows if not r["error"]]
    assert [(_path(r["image_url"]), r["rank"]) for r in good] == [(p, rank) for p in GOOD for rank in ("1", "2")]
    # the top suggestion is the corpus caption nearest to the image, by features computed by hand
    red = good[0]
    images, texts = reference_run_features(tiny_run, [red["path"]], CAPTIONS)
    scores = texts @ images[0]
    assert red["caption"] == CAPTIONS[int(scores.argmax())]
    assert float(red["score"]) == pytest.approx(float(scores.max()), abs=1e-4)

    # the patched copy: the top suggestion in each empty alt, escaped; failures and the kept alt unchanged
    text = patched.read_text(encoding="utf-8")
    assert "<b>above</b>" not in text and "</script>" not in text.split("<body>")[1]
    soup = BeautifulSoup(text, "html.parser")
    alts = {(img.get("data-src") or img.get("srcset") or img.get("src")): img.get("alt") for img in soup.find_all("img")}
    tops = {_path(r["image_url"]): r["caption"] for r in good if r["rank"] == "1"}
    assert alts["img/red.png"] == tops["/site/img/red.png"]
    assert alts["img/small.png 100w, img/big.png 400w, img/mid.png 200w"] == tops["/site/img/big.png"]
    assert alts["/assets/lazy.png"] == tops["/assets/lazy.png"]
    assert alts["img/gone.png"] is None and alts["img/logo.svg"] is None and alts["img/kept.png"] == "A kept description"
    assert soup.find("img", src=lambda s: s and s.startswith("data:image/png")).get("alt") == "  "
    assert soup.title.string == "Shop" and soup.h1.string == "Our shapes"
    assert '<img src="img/kept.png" alt="A kept description">' in text  # as written: attribute order, no "/>"
    assert "1 inline image" in printed
    assert (out.parent / "alt.html").is_file()

    # a second run: the good images come from the cache (no request), the failures are tried again
    assert main(argv) == 0
    assert "10 distinct image URLs: 6 fetched now, 4 from the cache" in capsys.readouterr().out
    again = server.take_requests()  # the bytes that are not an image were fetched: cached too
    assert not set(again) & (set(GOOD) | NEVER_REQUESTED | {"/site/img/notes.png"})
    assert "/site/index.html" in again and "/site/img/gone.png" in again
    assert _rows(out) == rows


def test_alt_text_for_a_crawl_csv_keeps_each_row_s_page(tiny_run, server, tmp_path):
    from dpcnn.cli import main

    page = server.url("/site/index.html")
    listing = tmp_path / "crawl.csv"
    listing.write_text("Address,Image URL\n"
                       f"{page},img/red.png\n"
                       f"{server.url('/other.html')},{server.url('/assets/lazy.png')}\n"
                       f"{page},img/gone.png\n")
    out = tmp_path / "alt.csv"
    assert main(["alt-text", "--run", str(tiny_run), "--urls", str(listing), "--url-column", "Image URL",
                 "--page-column", "Address", "--out", str(out), "--k", "1", "--timeout", str(TIMEOUT)]) == 0
    rows = _rows(out)
    assert [(r["page_url"], _path(r["image_url"]), r["rank"], r["error"]) for r in rows] == [
        (page, "/site/img/red.png", "1", ""),
        (server.url("/other.html"), "/assets/lazy.png", "1", ""),
        (page, "/site/img/gone.png", "", "HTTP 404 (Not Found)"),
    ]
    assert all(r["caption"] for r in rows[:2]) and Path(rows[0]["path"]).parent == tmp_path / ".dpcnn-web-cache"


def test_web_input_mistakes_are_one_line_errors(server, tmp_path, capsys):
    from dpcnn.cli import main

    listing = tmp_path / "urls.csv"
    listing.write_text(f"image\n{server.url('/site/img/red.png')}\n")
    headerless = tmp_path / "plain.csv"
    headerless.write_text(f"{server.url('/site/img/red.png')}\n")
    out = str(tmp_path / "a.csv")
    described = tmp_path / "described.html"
    described.write_text('<p><img src="a.png" alt="A red square"></p>')
    (tmp_path / "text.html").write_text("just text")
    cases = [
        (["--page", str(described)], "every <img> on " + str(described) + " already has alt text (1)"),
        (["--page", str(tmp_path / "text.html")], "has no <img> element"),
        (["--images", server.url("/site/index.html")], "--images takes a local folder or CSV file, not a URL"),
        (["--images", str(listing)], "use --urls " + str(listing) + " --url-column 'image' to fetch them"),
        (["--images", str(headerless)], "--url-column NAME (the CSV needs a header row)"),
        (["--urls", str(listing)], "--urls needs --url-column NAME"),
        (["--urls", str(listing), "--url-column", "url"], "(columns: image)"),
        (["--images", str(tmp_path), "--write-html", "x.html"], "--write-html OUT writes a copy of the page"),
        (["--images", str(tmp_path), "--url-column", "image"], "go with --urls"),
        (["--page", server.url("/site/nothing.html")], "HTTP 404"),
        (["--page", str(tmp_path / "no.html")], "no such HTML file"),
        (["--page", server.url("/site/index.html"), "--timeout", "0"], "--timeout must be more than 0"),
        (["--images", str(tmp_path), "--max-bytes", "1000"], "they go with --page or --urls"),
        (["--page", server.url("/site/index.html"), "--html", "--write-html", str(tmp_path / "a.html")],
         "is also the file of --out or --html"),
    ]
    for args, message in cases:
        # the model is never loaded: these are found first
        assert main(["alt-text", "--model", str(tmp_path / "no-model"), *args, "--out", out]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("dpcnn alt-text: error:") and message in err and len(err.strip().splitlines()) == 1, err


def test_an_images_csv_header_of_any_name_is_a_header(tmp_path):
    from dpcnn.alt_text import read_image_list

    (tmp_path / "a.png").write_bytes(_png((1, 1, 1)))
    named = tmp_path / "named.csv"
    named.write_text("title,Image\nfirst,a.png\nsecond,\n")
    items, _ = read_image_list(named)
    assert [(Path(i.path).name, i.error) for i in items] == [("a.png", ""), ("", "empty path cell (line 3 of named.csv)")]
    other = tmp_path / "other.csv"
    other.write_text("photo,title\na.png,x\nb.jpg,y\n")  # a header of another name: not taken as an image
    assert [Path(i.path).name for i in read_image_list(other)[0]] == ["a.png", "b.jpg"]
    bare = tmp_path / "bare.csv"
    bare.write_text("a.png\nmissing.png\n")  # no header: every row an image
    assert [Path(i.path).name for i in read_image_list(bare)[0]] == ["a.png", "missing.png"]
