"""Images of web pages for ``dpcnn alt-text``: the ``<img>`` elements of a page that lack alt text,
the image URLs of a crawl export, and fetching them over http(s) into a local cache.

One job, and no TensorFlow: every image reference becomes a local file or a reason a person can
read — "HTTP 404 (Not Found)", "timed out (after 10 s)", "too large (over 20000000 bytes)",
"not an image (Content-Type text/html)", "SVG not supported", "inline image (data: URI, not fetched)" —
never an exception. Only a page that cannot be read at all (``--page``) or a crawl CSV without the
named column is an error (one line).

Pages are parsed with Beautiful Soup (Python's own ``html.parser``): an ``<img>`` whose ``alt`` is
missing or blank is taken; its image is, in this order, the largest candidate of ``data-srcset``,
``data-src`` (lazy loading: ``src`` is then a placeholder), the largest candidate of ``srcset``
(by width ``w``, else density ``x``), ``src``; relative URLs are resolved against the page (or its
``<base href>``). A local HTML file's relative images are local files.

Fetches (:func:`fetch_images`): ``requests`` with a timeout from connecting to the last byte, a
byte limit read in chunks, ``Content-Type`` ``image/*`` (or a generic ``application/octet-stream``,
whose bytes the decoder then checks), status 200 after redirects. Fetched images are kept in a
cache folder, one file per URL (named by the sha256 of the URL) with a ``.json`` beside it; a
later run reads them from there and sends no request. Failures are not cached: they are tried
again on the next run. Delete the folder to fetch everything anew.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import os
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpcnn.errors import DataNotFoundError, DownloadError, SearchError
from dpcnn.utils import atomic_write_bytes, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

WEB_CACHE_DIR = ".dpcnn-web-cache"
FETCH_WORKERS = 4
"""Images fetched at the same time."""
PAGE_COLUMNS = ("page_url", "page", "page url", "source", "source url", "from")
"""Names (any case) taken as a crawl CSV's page column when ``--page-column`` is not given."""
GENERIC_TYPES = ("application/octet-stream", "binary/octet-stream")
"""Content types that say nothing about the bytes: accepted, the image decoder checks them."""
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchLimits:
    """``timeout``: seconds for one fetch, from connecting to the last byte; ``max_bytes``: its size limit."""

    timeout: float = 10.0
    max_bytes: int = 20_000_000

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise SearchError(f"--timeout must be more than 0 seconds, got {self.timeout}")
        if self.max_bytes < 1:
            raise SearchError(f"--max-bytes must be at least 1, got {self.max_bytes}")


@dataclass
class ImageRef:
    """One image reference: the page it is on, its absolute URL, and why it will not be fetched
    (``reason``; empty if it will). ``tag`` is the page's ``<img>`` element (None for a crawl row)."""

    image_url: str
    page_url: str = ""
    reason: str = ""
    tag: Any = field(default=None, repr=False, compare=False)


@dataclass
class Page:
    """A parsed HTML page: ``url`` is what the rows show (the final URL, or the file as given),
    ``base`` the URL relative references resolve against; ``local``: read from a file."""

    soup: Any
    url: str
    base: str
    local: bool


class FetchFailed(Exception):
    """One URL could not be fetched; the message is the reason (a row's ``error``)."""


# --------------------------------------------------------------------------------------------
# Reading a page and finding its images
# --------------------------------------------------------------------------------------------


def is_web_url(text: str) -> bool:
    return urllib.parse.urlsplit(text.strip()).scheme.lower() in ("http", "https")


def read_page(source: str, limits: FetchLimits) -> Page:
    """An HTML file or an http(s) URL → :class:`Page`. A page that cannot be read is a one-line error."""
    from bs4 import BeautifulSoup

    if is_web_url(source):
        body, ctype, final_url, charset = _get_page(source, limits)
        soup = BeautifulSoup(body, "html.parser", from_encoding=charset)
        shown, base, local = final_url, final_url, False
    else:
        path = Path(source)
        if not path.is_file():
            raise DataNotFoundError(f"--page {source}: no such HTML file (or give an http(s) URL)")
        soup = BeautifulSoup(path.read_bytes(), "html.parser")
        shown, base, local = source, path.resolve().as_uri(), True
    base_tag = soup.find("base", href=True)
    if base_tag is not None:
        base = urllib.parse.urljoin(base, str(base_tag["href"]).strip())
    return Page(soup, shown, base, local)


def _get_page(url: str, limits: FetchLimits) -> tuple[bytes, str, str, str | None]:
    import requests

    def html_only(ctype: str) -> str:
        return "" if ctype in ("text/html", "application/xhtml+xml") else f"not an HTML page (Content-Type {ctype or 'missing'})"

    with requests.Session() as session:
        try:
            body, ctype, final_url, charset = _get(session, url, limits, html_only, "text/html,application/xhtml+xml")
        except FetchFailed as e:
            raise DownloadError(f"cannot read the page {url}: {e}", url=url) from None
    return body, ctype, final_url, charset


def parse_srcset(value: str) -> list[tuple[str, str, float]]:
    """The candidates of a ``srcset`` value: [(url, "w" or "x", number)], in order.

    The HTML standard's syntax: a URL (no white space; a trailing comma ends the candidate), then
    optional descriptors up to a comma outside parentheses — ``480w``, ``2x``; none means ``1x``.
    A candidate with another descriptor (``100h``, a typo) gets ``("x", 0)`` so it is chosen last.
    """
    out: list[tuple[str, str, float]] = []
    pos, n = 0, len(value)
    while pos < n:
        while pos < n and (value[pos].isspace() or value[pos] == ","):
            pos += 1
        start = pos
        while pos < n and not value[pos].isspace():
            pos += 1
        url, descriptor = value[start:pos], ""
        if not url:
            break
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            start, depth = pos, 0
            while pos < n and (value[pos] != "," or depth):
                depth += {"(": 1, ")": -1}.get(value[pos], 0)
                pos += 1
            descriptor = value[start:pos].strip()
        out.append((url, *_descriptor(descriptor)))
    return out


def _descriptor(text: str) -> tuple[str, float]:
    if not text:
        return "x", 1.0
    unit, number = text[-1:].lower(), text[:-1]
    try:
        value = float(number)
    except ValueError:
        return "x", 0.0
    return (unit, value) if unit in ("w", "x") and value > 0 else ("x", 0.0)


def largest_candidate(srcset: str) -> str:
    """The URL of the widest candidate of ``srcset`` (by ``w``; without any ``w``, by density ``x``), or ""."""
    candidates = parse_srcset(srcset)
    widths = [c for c in candidates if c[1] == "w"]
    pool = widths or candidates
    return max(pool, key=lambda c: c[2])[0] if pool else ""


def _attr(tag, name: str) -> str:
    value = tag.get(name)
    if isinstance(value, list):  # bs4 splits a few multi-valued attributes
        value = " ".join(value)
    return (value or "").strip()


def image_source(tag) -> str:
    """The image URL an ``<img>`` shows, as written: the first of data-srcset (largest), data-src,
    srcset (largest), src that is present and not an inline ``data:`` URI (else the ``data:`` URI, else "")."""
    found = []
    for name in ("data-srcset", "data-src", "srcset", "src"):
        value = _attr(tag, name)
        if value and name.endswith("srcset"):
            value = largest_candidate(value)
        if value:
            found.append(value)
    real = [v for v in found if not v.lower().startswith("data:")]
    return (real or found or [""])[0]


def classify_url(url: str, allow_files: bool = False) -> str:
    """Why ``url`` will not be fetched ("" if it will)."""
    if not url:
        return "no image URL"
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "data":
        return "inline image (data: URI, not fetched)"
    if scheme not in ("http", "https") and not (allow_files and scheme == "file"):
        return f"unsupported URL scheme ({scheme or 'none'}): only http(s) images are fetched"
    if parts.path.lower().endswith((".svg", ".svgz")):
        return "SVG not supported (the model reads raster images)"
    return ""


def _shortened(data_uri: str) -> str:
    """A ``data:`` URI as a row shows it (its first 37 characters)."""
    return data_uri if len(data_uri) <= 40 else data_uri[:37] + "..."


def images_without_alt(page: Page) -> tuple[list[ImageRef], int]:
    """The ``<img>`` elements whose ``alt`` is missing or blank, in document order, with their
    absolute image URLs; and how many ``<img>`` already have alt text (left alone, not fetched)."""
    refs, with_alt = [], 0
    for tag in page.soup.find_all("img"):
        alt = tag.get("alt")
        if isinstance(alt, str) and alt.strip():
            with_alt += 1
            continue
        written = image_source(tag)
        if written.lower().startswith("data:"):
            refs.append(ImageRef(_shortened(written), page.url, classify_url(written), tag))
            continue
        url = urllib.parse.urljoin(page.base, written) if written else ""
        refs.append(ImageRef(url, page.url, classify_url(url, allow_files=page.local), tag))
    return refs, with_alt


def read_url_csv(path: str | os.PathLike, url_column: str | None, page_column: str | None = None) -> tuple[list[ImageRef], str]:
    """Image references from a crawl export: one per data row, the URL in ``url_column``, the page in
    ``page_column`` (default: a column named like page_url/page/source, if there is one); relative image
    URLs resolve against the page. Returns the refs and the page column used ("" for none)."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"--urls {path}: no such CSV file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c for c in (reader.fieldnames or []) if c is not None]
        if not columns:
            raise SearchError(f"{path} is empty: a crawl CSV needs a header row and one image URL a row")
        listing = ", ".join(columns)
        if not url_column:
            raise SearchError(f"--urls needs --url-column NAME: the column of image URLs (columns of {path.name}: {listing})")
        if url_column not in columns:
            raise SearchError(f"--url-column {url_column!r} is not a column of {path} (columns: {listing})")
        if page_column and page_column not in columns:
            raise SearchError(f"--page-column {page_column!r} is not a column of {path} (columns: {listing})")
        if not page_column:
            page_column = next((c for c in columns if c.strip().lower() in PAGE_COLUMNS and c != url_column), "")
        refs = []
        for row in reader:
            if not any((v or "").strip() for k, v in row.items() if k is not None):
                continue  # a blank line
            page_url = (row.get(page_column) or "").strip() if page_column else ""
            written = (row.get(url_column) or "").strip()
            if not written:
                refs.append(ImageRef("", page_url, f"empty {url_column} cell (line {reader.line_num})"))
                continue
            if written.lower().startswith("data:"):
                refs.append(ImageRef(_shortened(written), page_url, classify_url(written)))
                continue
            relative = not urllib.parse.urlsplit(written).scheme
            if relative and not is_web_url(page_url):
                refs.append(ImageRef(written, page_url, "relative URL with no http(s) page URL to resolve it against"))
                continue
            url = urllib.parse.urljoin(page_url, written) if relative else written
            refs.append(ImageRef(url, page_url, classify_url(url)))
    if page_column:
        log.info("page URLs from the column %r of %s", page_column, path)
    return refs, page_column


def fill_alt(refs: list[ImageRef], texts: list[str | None]) -> int:
    """Set the ``alt`` of each ref's ``<img>`` to its text (None: left as it is); returns how many were set."""
    filled = 0
    for ref, text in zip(refs, texts):
        if ref.tag is not None and text:
            ref.tag["alt"] = text
            filled += 1
    return filled


def write_page(page: Page, out: str | os.PathLike) -> Path:
    """The page as HTML (UTF-8), escaped by Beautiful Soup's serializer (``&``, ``<``, ``>`` as
    entities; an attribute value with ``"`` in single quotes, or ``&quot;``), each element's
    attributes in their original order and void elements as written in HTML (``<img …>``)."""
    from bs4.dammit import EntitySubstitution
    from bs4.formatter import HTMLFormatter

    class InOrder(HTMLFormatter):
        def attributes(self, tag):
            return list(tag.attrs.items()) if tag.attrs else []

    formatter = InOrder(entity_substitution=EntitySubstitution.substitute_xml, void_element_close_prefix="")
    out = Path(out)
    atomic_write_text(out, page.soup.decode(formatter=formatter))
    return out


# --------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------


def _get(session, url: str, limits: FetchLimits, check_type: Callable[[str], str], accept: str
         ) -> tuple[bytes, str, str, str | None]:
    """GET ``url`` within ``limits`` → (body, content type, final URL, charset); FetchFailed(reason) otherwise.
    ``check_type(content_type)`` returns why a content type is refused ("" if accepted)."""
    import requests

    from dpcnn import __version__

    start = time.monotonic()
    try:
        with session.get(url, stream=True, timeout=(limits.timeout, limits.timeout),
                         headers={"User-Agent": f"dpcnn-alt-text/{__version__}", "Accept": accept}) as r:
            if r.status_code != 200:
                raise FetchFailed(f"HTTP {r.status_code}" + (f" ({r.reason})" if r.reason else ""))
            ctype = r.headers.get("Content-Type", "").split(";")[0].strip().lower()
            refused = check_type(ctype)
            if refused:
                raise FetchFailed(refused)
            length = r.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > limits.max_bytes:
                raise FetchFailed(f"too large ({int(length)} bytes, over the limit of {limits.max_bytes})")
            body = bytearray()
            for chunk in r.iter_content(_CHUNK):
                body += chunk
                if len(body) > limits.max_bytes:
                    raise FetchFailed(f"too large (over the limit of {limits.max_bytes} bytes)")
                if time.monotonic() - start > limits.timeout:
                    raise FetchFailed(f"timed out (after {limits.timeout:g} s)")
            return bytes(body), ctype, r.url, r.encoding if "charset" in r.headers.get("Content-Type", "").lower() else None
    except requests.Timeout:
        raise FetchFailed(f"timed out (after {limits.timeout:g} s)") from None
    except requests.ConnectionError as e:
        if "timed out" in str(e).lower():  # a read timeout inside the body arrives as a ConnectionError
            raise FetchFailed(f"timed out (after {limits.timeout:g} s)") from None
        raise FetchFailed(f"connection failed ({_short(e)})") from None
    except requests.RequestException as e:
        raise FetchFailed(f"request failed ({_short(e)})") from None


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _image_type(ctype: str) -> str:
    if ctype == "image/svg+xml":
        return "SVG not supported (the model reads raster images)"
    if ctype.startswith("image/") or ctype in GENERIC_TYPES:
        return ""
    return f"not an image (Content-Type {ctype or 'missing'})"


def cache_key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def cached_image(cache_dir: Path, url: str) -> str:
    """The cached file of ``url`` ("" if it is not in the cache)."""
    meta = cache_dir / f"{cache_key(url)}.json"
    try:
        name = json.loads(meta.read_text(encoding="utf-8"))["file"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    path = cache_dir / str(name)
    return str(path) if path.parent == cache_dir and path.is_file() else ""


def _fetch_one(session, url: str, cache_dir: Path, limits: FetchLimits) -> str:
    body, ctype, final_url, _ = _get(session, url, limits, _image_type,
                                     "image/webp,image/png,image/jpeg,image/gif,image/*;q=0.8,*/*;q=0.1")
    if not body:
        raise FetchFailed("empty answer (0 bytes)")
    key = cache_key(url)
    suffix = (mimetypes.guess_extension(ctype) or ".img") if ctype.startswith("image/") else ".img"
    path = cache_dir / f"{key}{suffix}"
    atomic_write_bytes(path, body)
    atomic_write_json(cache_dir / f"{key}.json", {"url": url, "final_url": final_url, "content_type": ctype,
                                                  "bytes": len(body), "file": path.name})
    return str(path)


def _local_file(url: str) -> tuple[str, str]:
    path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
    return (path, "") if os.path.isfile(path) else ("", "missing image file")


def fetch_images(urls: Iterable[str], cache_dir: str | os.PathLike, limits: FetchLimits, allow_files: bool = False,
                 progress: bool = False) -> tuple[dict[str, tuple[str, str]], int]:
    """Each distinct URL → (local file, "") or ("", reason); and how many were fetched now.

    http(s) URLs found in ``cache_dir`` are not fetched again; the others are fetched, a few at a
    time, each within ``limits``. ``file:`` URLs (``allow_files``: images of a local page) are
    the files themselves.
    """
    from tqdm.auto import tqdm

    cache_dir = Path(cache_dir)
    results: dict[str, tuple[str, str]] = {}
    todo = []
    for url in dict.fromkeys(urls):
        if urllib.parse.urlsplit(url).scheme.lower() == "file":
            results[url] = _local_file(url) if allow_files else ("", classify_url(url))
        elif cached := cached_image(cache_dir, url):
            results[url] = (cached, "")
        else:
            todo.append(url)
    if not todo:
        return results, 0
    import requests

    local, sessions, lock = threading.local(), [], threading.Lock()

    def work(url: str) -> tuple[str, str]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            with lock:
                sessions.append(local.session)
        try:
            return _fetch_one(local.session, url, cache_dir, limits), ""
        except FetchFailed as e:
            return "", str(e)

    try:
        with ThreadPoolExecutor(max_workers=min(FETCH_WORKERS, len(todo))) as pool:
            futures = {pool.submit(work, url): url for url in todo}
            for future in tqdm(as_completed(futures), total=len(futures), desc="fetching images", unit="img",
                               disable=not progress, leave=False):
                results[futures[future]] = future.result()
    finally:
        for session in sessions:
            session.close()
    failed = [(u, results[u][1]) for u in todo if results[u][1]]
    for url, reason in failed:
        log.warning("not fetched %s: %s", url, reason)
    return results, len(todo)
