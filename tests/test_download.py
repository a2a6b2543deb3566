"""dpcnn.data.download against a local HTTP server (127.0.0.1, no internet).

The server serves bytes generated in the test and can honour ``Range``/``If-Range``, ignore
``Range`` (always HTTP 200), or cut the connection after N bytes. Archives for the extraction
tests are built in ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import re
import stat
import tarfile
import threading
import zipfile
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType

import pytest

from dpcnn.data import download as dl

# --------------------------------------------------------------------------------------------
# Local HTTP server
# --------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.etags: dict[str, str] = {}
        self.honour_range = True  # False: answer every request with 200 and the whole file
        self.cut_after: int | None = None  # bytes of body sent before the connection is cut
        self.cuts_left = 0  # how many responses are cut
        self.requests: list[dict[str, str | None]] = []

    def add(self, path: str, data: bytes, etag: str | None = None) -> str:
        self.files[path] = data
        self.etags[path] = etag or f'"{hashlib.sha256(data).hexdigest()[:16]}"'
        return f"http://127.0.0.1:{self.server_port}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        srv = self.server
        srv.requests.append(
            {
                "path": self.path,
                "range": self.headers.get("Range"),
                "if_range": self.headers.get("If-Range"),
            }
        )
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        etag = srv.etags[self.path]
        requested = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        start = 0
        if requested and srv.honour_range and if_range in (None, etag):
            start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes" if srv.honour_range else "none")
        self.end_headers()
        if srv.cut_after is not None and srv.cuts_left > 0:
            srv.cuts_left -= 1
            self.wfile.write(body[: srv.cut_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _propagate_logs(monkeypatch):
    # the CLI's setup_logging() turns propagation off; caplog listens on the root logger
    monkeypatch.setattr(logging.getLogger("dpcnn"), "propagate", True)


def _payload(n: int = 300_000, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# --------------------------------------------------------------------------------------------
# download_file
# --------------------------------------------------------------------------------------------


def test_correct_download_is_verified_and_renamed(server, tmp_path):
    data = _payload()
    url = server.add("/f.bin", data)
    dest = tmp_path / "sub" / "f.bin"
    out = dl.download_file(
        url, dest, expected_sha256=_sha256(data), expected_size=len(data), progress=False
    )
    assert out == dest
    assert dest.read_bytes() == data
    assert not (tmp_path / "sub" / "f.bin.part").exists()
    assert not (tmp_path / "sub" / "f.bin.part.json").exists()
    assert not (tmp_path / "sub" / "f.bin.sha256").exists()  # verified: no sidecar
    assert server.requests[0]["range"] is None


def test_md5_is_verified(server, tmp_path):
    data = _payload()
    url = server.add("/f.bin", data)
    dl.download_file(url, tmp_path / "f.bin", expected_md5=_md5(data).upper(), progress=False)
    assert (tmp_path / "f.bin").read_bytes() == data
    with pytest.raises(dl.ChecksumError):
        dl.download_file(url, tmp_path / "g.bin", expected_md5="0" * 32, progress=False)


def test_wrong_checksum_fails_loudly_and_leaves_no_file(server, tmp_path):
    data = _payload()
    url = server.add("/f.bin", data)
    dest = tmp_path / "f.bin"
    wrong = "ab" * 32
    with pytest.raises(dl.ChecksumError) as info:
        dl.download_file(url, dest, expected_sha256=wrong, progress=False)
    message = str(info.value)
    assert wrong in message and _sha256(data) in message and url in message
    assert info.value.expected == wrong and info.value.actual == _sha256(data)
    assert not dest.exists()
    assert not (tmp_path / "f.bin.part").exists()
    assert not (tmp_path / "f.bin.part.json").exists()


def test_size_announced_by_server_must_match(server, tmp_path):
    data = _payload()
    url = server.add("/f.bin", data)
    with pytest.raises(
        dl.DownloadError, match=f"{len(data)} bytes but the registry expects {len(data) + 1}"
    ):
        dl.download_file(url, tmp_path / "f.bin", expected_size=len(data) + 1, progress=False)
    assert not (tmp_path / "f.bin").exists()


def test_interrupted_transfer_leaves_part_that_next_call_resumes(server, tmp_path):
    data = _payload()
    url = server.add("/f.bin", data)
    dest = tmp_path / "f.bin"
    server.cut_after, server.cuts_left = 100_000, 1

    with pytest.raises(dl.DownloadError, match="run the same command again to resume") as info:
        dl.download_file(url, dest, expected_sha256=_sha256(data), progress=False, retries=0)
    assert info.value.resumable
    part = tmp_path / "f.bin.part"
    assert part.read_bytes() == data[:100_000]
    assert not dest.exists()

    dl.download_file(url, dest, expected_sha256=_sha256(data), progress=False, retries=0)
    assert [r["range"] for r in server.requests] == [None, "bytes=100000-"]
    assert server.requests[1]["if_range"] == server.etags["/f.bin"]
    assert dest.read_bytes() == data
    assert not part.exists()


def test_retry_resumes_within_one_call(server, tmp_path, caplog):
    data = _payload()
    url = server.add("/f.bin", data)
    server.cut_after, server.cuts_left = 123_456, 1
    caplog.set_level(logging.INFO)
    dl.download_file(
        url,
        tmp_path / "f.bin",
        expected_sha256=_sha256(data),
        progress=False,
        retries=2,
        retry_wait=0,
    )
    assert [r["range"] for r in server.requests] == [None, "bytes=123456-"]
    assert (tmp_path / "f.bin").read_bytes() == data
    assert "retry 1/2" in caplog.text


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    data = _payload()
    url = server.add("/f.bin", data)
    server.honour_range = False
    dest = tmp_path / "f.bin"
    # a .part of this URL whose bytes are wrong: appending to it would fail the checksum
    (tmp_path / "f.bin.part").write_bytes(b"x" * 50_000)
    (tmp_path / "f.bin.part.json").write_text(json.dumps({"url": url}))

    dl.download_file(url, dest, expected_sha256=_sha256(data), progress=False, retries=0)
    assert server.requests[0]["range"] == "bytes=50000-"  # it asked to resume ...
    assert dest.read_bytes() == data  # ... got HTTP 200 and started again from byte 0
    assert len(server.requests) == 1


def test_changed_remote_file_restarts_through_if_range(server, tmp_path):
    old, new = _payload(seed=1), _payload(seed=2)
    url = server.add("/f.bin", new, etag='"new"')
    (tmp_path / "f.bin.part").write_bytes(old[:70_000])
    (tmp_path / "f.bin.part.json").write_text(json.dumps({"url": url, "etag": '"old"'}))
    dl.download_file(
        url, tmp_path / "f.bin", expected_sha256=_sha256(new), progress=False, retries=0
    )
    assert server.requests[0]["if_range"] == '"old"'
    assert (tmp_path / "f.bin").read_bytes() == new


def test_part_from_another_url_is_not_resumed(server, tmp_path):
    data = _payload()
    url = server.add("/f.bin", data)
    (tmp_path / "f.bin.part").write_bytes(data[:1000])
    (tmp_path / "f.bin.part.json").write_text(json.dumps({"url": "http://elsewhere/f.bin"}))
    dl.download_file(url, tmp_path / "f.bin", expected_sha256=_sha256(data), progress=False)
    assert server.requests[0]["range"] is None
    assert (tmp_path / "f.bin").read_bytes() == data


def test_complete_part_answered_416_is_verified_without_refetch(server, tmp_path):
    data = _payload()
    url = server.add("/f.bin", data)
    (tmp_path / "f.bin.part").write_bytes(data)
    (tmp_path / "f.bin.part.json").write_text(json.dumps({"url": url}))
    dl.download_file(url, tmp_path / "f.bin", expected_sha256=_sha256(data), progress=False)
    assert server.requests[0]["range"] == f"bytes={len(data)}-"
    assert (tmp_path / "f.bin").read_bytes() == data


def test_unverified_file_warns_and_writes_its_sha256(server, tmp_path, caplog):
    data = _payload()
    url = server.add("/f.bin", data)
    caplog.set_level(logging.WARNING)
    dl.download_file(url, tmp_path / "f.bin", expected_size=len(data), progress=False)
    assert "UNVERIFIED" in caplog.text and url in caplog.text
    assert (tmp_path / "f.bin.sha256").read_text() == f"{_sha256(data)}  f.bin\n"


def test_http_404_is_a_clear_permanent_error(server, tmp_path):
    url = server.add("/f.bin", b"x")
    with pytest.raises(dl.DownloadError, match="HTTP 404") as info:
        dl.download_file(url + "-missing", tmp_path / "f.bin", progress=False, retries=0)
    assert not info.value.resumable
    assert server.requests[0]["path"] == "/f.bin-missing"


def test_not_enough_disk_space_stops_before_writing(server, tmp_path, monkeypatch):
    data = _payload()
    url = server.add("/f.bin", data)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda _path: usage(100, 90, 10))
    with pytest.raises(dl.DownloadError, match="not enough disk space"):
        dl.download_file(url, tmp_path / "f.bin", progress=False)
    assert not (tmp_path / "f.bin.part").exists()


# --------------------------------------------------------------------------------------------
# safe_extract
# --------------------------------------------------------------------------------------------


def _zip(path: Path, entries: list[tuple[str, bytes | str]]) -> Path:
    """Entries: (name, bytes) for files, (name, str) for symlinks with that target."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in entries:
            info = zipfile.ZipInfo(name)
            if isinstance(content, str):
                info.create_system = 3
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, content.encode())
            else:
                zf.writestr(info, content)
    assert [i.filename for i in zipfile.ZipFile(path).infolist()] == [n for n, _ in entries]
    return path


def _tar(path: Path, entries: list[tuple[str, bytes | str]], *, hard: bool = False) -> Path:
    """Entries: (name, bytes) for files, (name, str) for symlinks (hard links if ``hard``)."""
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tf:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
                info.linkname = content
                tf.addfile(info)
            else:
                info.size = len(content)
                tf.addfile(info, io.BytesIO(content))
    return path


_BUILDERS = {"zip": (_zip, "a.zip"), "tar": (_tar, "a.tar"), "tar.gz": (_tar, "a.tar.gz")}


@pytest.fixture(params=sorted(_BUILDERS))
def build(request, tmp_path):
    builder, name = _BUILDERS[request.param]
    return lambda entries: builder(tmp_path / name, entries)


def test_safe_extract_writes_a_good_archive(build, tmp_path):
    archive = build(
        [
            ("top/a.txt", b"alpha"),
            ("top/sub/b.txt", b"beta"),
            ("top/link", "sub/b.txt"),  # a link that stays inside is fine
            ("__MACOSX/._a.txt", b"junk"),
        ]
    )
    target = tmp_path / "out"
    written = dl.safe_extract(archive, target, exclude=("__MACOSX/",))
    assert (target / "top/a.txt").read_bytes() == b"alpha"
    assert (target / "top/sub/b.txt").read_bytes() == b"beta"
    assert (target / "top/link").is_symlink() and (target / "top/link").read_bytes() == b"beta"
    assert not (target / "__MACOSX").exists()
    assert target / "top/a.txt" in written


@pytest.mark.parametrize(
    "entries, member, reason",
    [
        ([("ok.txt", b"ok"), ("../evil.txt", b"evil")], "../evil.txt", "'..'"),
        ([("ok.txt", b"ok"), ("a/../../evil.txt", b"evil")], "a/../../evil.txt", "'..'"),
        (
            [("ok.txt", b"ok"), ("/tmp/dpcnn-abs-evil.txt", b"evil")],
            "/tmp/dpcnn-abs-evil.txt",
            "absolute",
        ),
        ([("ok.txt", b"ok"), ("link", "../outside")], "link", "outside the target"),
        ([("ok.txt", b"ok"), ("d/link", "../../outside")], "d/link", "outside the target"),
        ([("ok.txt", b"ok"), ("link", "/etc/passwd")], "link", "absolute"),
    ],
)
def test_safe_extract_refuses_escaping_members_before_writing(
    build, tmp_path, entries, member, reason
):
    archive = build(entries)
    target = tmp_path / "out"
    with pytest.raises(dl.UnsafeArchiveError, match=reason) as info:
        dl.safe_extract(archive, target)
    assert info.value.member == member and repr(member) in str(info.value)
    assert list(target.iterdir()) == []  # every member is checked before the first is written
    assert not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/dpcnn-abs-evil.txt").exists()


def test_safe_extract_refuses_chained_links_that_escape(build, tmp_path):
    # "y" -> "x/.." looks harmless lexically, but "x" -> "." makes it point at the parent
    archive = build([("x", "."), ("y", "x/.."), ("y/evil.txt", b"evil")])
    target = tmp_path / "out"
    with pytest.raises(dl.UnsafeArchiveError) as info:
        dl.safe_extract(archive, target)
    assert info.value.member in ("y", "y/evil.txt")
    assert not (tmp_path / "evil.txt").exists()
    assert not (target / "y").exists()


def test_safe_extract_refuses_tar_hard_link_out_of_target(tmp_path):
    archive = _tar(tmp_path / "h.tar", [("ok.txt", b"ok"), ("hl", "../outside.txt")], hard=True)
    with pytest.raises(dl.UnsafeArchiveError, match="outside the target") as info:
        dl.safe_extract(archive, tmp_path / "out")
    assert info.value.member == "hl"


def test_safe_extract_refuses_tar_device_files(tmp_path):
    archive = tmp_path / "dev.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("null")
        info.type = tarfile.CHRTYPE
        tf.addfile(info)
    with pytest.raises(dl.UnsafeArchiveError, match="special file"):
        dl.safe_extract(archive, tmp_path / "out")


def test_safe_extract_rejects_non_archives(tmp_path):
    bogus = tmp_path / "x.zip"
    bogus.write_bytes(b"not an archive at all")
    with pytest.raises(ValueError, match="neither a zip nor a tar"):
        dl.safe_extract(bogus, tmp_path / "out")


# --------------------------------------------------------------------------------------------
# download(): registry items
# --------------------------------------------------------------------------------------------


def _zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    return buffer.getvalue()


@pytest.fixture
def fake_registry(server, monkeypatch):
    """A registry item "things": a zip extracted into things/, a plain file kept as is in vec/."""
    archive = _zip_bytes(
        {"pack/a.txt": b"alpha", "pack/b.txt": b"beta", "__MACOSX/._a.txt": b"junk"}
    )
    plain = _payload(50_000, seed=3)
    zip_url = server.add("/pack.zip", archive)
    plain_url = server.add("/vectors.bin.gz", plain)

    def install(
        plain_sources: tuple[dl.Source, ...] | None = None,
        expect_zip=("things/pack/a.txt", "things/pack/b.txt"),
    ):
        item = dl.Item(
            description="test item",
            files=(
                dl.RemoteFile(
                    filename="pack.zip",
                    sources=(dl.Source(zip_url, sha256=_sha256(archive), size=len(archive)),),
                    subdir="things",
                    extract=True,
                    exclude=("__MACOSX/",),
                    expect=expect_zip,
                ),
                dl.RemoteFile(
                    filename="vectors.bin.gz",
                    sources=plain_sources or (dl.Source(plain_url, md5=_md5(plain)),),
                    subdir="vec",
                    expect=("vec/vectors.bin.gz",),
                ),
            ),
        )
        monkeypatch.setattr(dl, "REGISTRY", MappingProxyType({"things": item}))
        return item

    install.archive, install.plain, install.plain_url = archive, plain, plain_url
    return install


def test_download_extracts_into_place_and_skips_the_second_time(
    server, tmp_path, fake_registry, caplog
):
    fake_registry()
    root = tmp_path / "data"
    paths = dl.download("things", root, progress=False)
    assert paths == [
        root / "things/pack/a.txt",
        root / "things/pack/b.txt",
        root / "vec/vectors.bin.gz",
    ]
    assert (root / "things/pack/a.txt").read_bytes() == b"alpha"
    assert not (root / "things/__MACOSX").exists()
    assert (root / "vec/vectors.bin.gz").read_bytes() == fake_registry.plain
    assert (root / "things/pack.zip").exists()  # archives are kept by default
    assert len(server.requests) == 2

    caplog.set_level(logging.INFO)
    assert dl.download("things", root, progress=False) == paths
    assert len(server.requests) == 2  # nothing fetched again
    assert caplog.text.count("already present and verified, skipping") == 2


def test_download_without_archives_still_skips(server, tmp_path, fake_registry):
    fake_registry()
    root = tmp_path / "data"
    dl.download("things", root, progress=False, keep_archives=False)
    assert not (root / "things/pack.zip").exists()
    assert (root / "things/pack/b.txt").read_bytes() == b"beta"
    dl.download("things", root, progress=False, keep_archives=False)
    assert len(server.requests) == 2


def test_download_verifies_a_file_that_is_already_there(server, tmp_path, fake_registry):
    fake_registry()
    root = tmp_path / "data"
    (root / "vec").mkdir(parents=True)
    (root / "vec/vectors.bin.gz").write_bytes(fake_registry.plain)  # e.g. copied by hand
    dl.download("things", root, progress=False)
    assert [r["path"] for r in server.requests] == ["/pack.zip"]


def test_download_replaces_a_corrupt_file(server, tmp_path, fake_registry, caplog):
    fake_registry()
    root = tmp_path / "data"
    (root / "vec").mkdir(parents=True)
    (root / "vec/vectors.bin.gz").write_bytes(b"truncated")
    caplog.set_level(logging.WARNING)
    dl.download("things", root, progress=False)
    assert (root / "vec/vectors.bin.gz").read_bytes() == fake_registry.plain
    assert "does not match any known size/checksum" in caplog.text


def test_download_falls_back_to_the_next_mirror(server, tmp_path, fake_registry, caplog):
    plain = fake_registry.plain
    fake_registry(
        plain_sources=(
            dl.Source(fake_registry.plain_url + "-gone", md5=_md5(plain)),
            dl.Source(fake_registry.plain_url, md5=_md5(plain)),
        )
    )
    caplog.set_level(logging.WARNING)
    dl.download("things", tmp_path, progress=False, retries=0)
    assert (tmp_path / "vec/vectors.bin.gz").read_bytes() == plain
    assert "trying the next mirror" in caplog.text


def test_download_reports_every_failed_mirror(server, tmp_path, fake_registry):
    url = fake_registry.plain_url
    fake_registry(plain_sources=(dl.Source(url + "-a"), dl.Source(url, sha256="0" * 64)))
    with pytest.raises(dl.DownloadError, match="from any of its 2 sources") as info:
        dl.download("things", tmp_path, progress=False, retries=0)
    assert url + "-a" in str(info.value) and "checksum mismatch" in str(info.value)
    assert not (tmp_path / "vec/vectors.bin.gz").exists()


def test_download_of_an_unverified_file_warns_and_writes_sha256(
    server, tmp_path, fake_registry, caplog
):
    plain = fake_registry.plain
    fake_registry(plain_sources=(dl.Source(fake_registry.plain_url, size=len(plain)),))
    caplog.set_level(logging.WARNING)
    dl.download("things", tmp_path, progress=False)
    assert "UNVERIFIED" in caplog.text
    assert (tmp_path / "vec/vectors.bin.gz.sha256").read_text().split()[0] == _sha256(plain)
    stamp = json.loads((tmp_path / "vec/.vectors.bin.gz.verified.json").read_text())
    assert stamp["verified"] is False and stamp["digests"]["sha256"] == _sha256(plain)


def test_download_checks_the_extracted_layout(server, tmp_path, fake_registry):
    fake_registry(expect_zip=("things/pack/a.txt", "things/pack/missing.txt"))
    with pytest.raises(dl.DownloadError, match="missing.txt"):
        dl.download("things", tmp_path, progress=False)


def test_manual_items_raise_with_their_instructions(tmp_path):
    with pytest.raises(dl.ManualDownloadRequired) as info:
        dl.download("flickr30k", tmp_path / "d")
    text = str(info.value)
    assert "https://shannon.cs.illinois.edu/DenotationGraph/" in text
    assert f"{(tmp_path / 'd').as_posix()}/flickr30k/results_20130124.token" in text
    assert f"{(tmp_path / 'd').as_posix()}/flickr30k/flickr30k-images/" in text
    assert dl.is_manual("flickr30k") and dl.is_manual("cuhk-pedes") and not dl.is_manual("coco")

    cuhk = dl.manual_instructions("cuhk-pedes")
    assert "https://github.com/ShuangLI59/Person-Search-with-Natural-Language-Description" in cuhk
    assert "data/cuhk-pedes/reid_raw.json" in cuhk and "data/cuhk-pedes/imgs/" in cuhk
    assert "dpcnn download coco" in dl.manual_instructions("coco")


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(dl.UnknownItemError, match="coco, cuhk-pedes, flickr30k, flickr30k-splits"):
        dl.download("imagenet", "data")


# --------------------------------------------------------------------------------------------
# The real registry (no network: only its shape)
# --------------------------------------------------------------------------------------------


def test_available_lists_every_item_with_a_description():
    items = dl.available()
    assert set(items) == {
        "coco",
        "karpathy-splits",
        "flickr30k-splits",
        "word2vec",
        "flickr30k",
        "cuhk-pedes",
    }
    assert all(isinstance(d, str) and d and "\n" not in d for d in items.values())


def test_registry_checksums_are_well_formed_and_paths_follow_the_layout():
    expected_outputs = {
        "coco": {
            "coco/train2014",
            "coco/val2014",
            "coco/annotations/captions_train2014.json",
            "coco/annotations/captions_val2014.json",
        },
        "karpathy-splits": {"karpathy/dataset_coco.json", "karpathy/dataset_flickr30k.json"},
        "flickr30k-splits": {
            "flickr8k/Flickr_8k.testImages.txt",
            "flickr8k/Flickr_8k.devImages.txt",
        },
        "word2vec": {"word2vec/GoogleNews-vectors-negative300.bin.gz"},
    }
    for name, outputs in expected_outputs.items():
        item = dl.REGISTRY[name]
        assert {p for f in item.files for p in f.expect} == outputs
        for remote in item.files:
            assert remote.sources
            assert all(p.startswith(remote.subdir + "/") for p in remote.expect)
            for source in remote.sources:
                assert re.match(r"https?://[^/]+/", source.url)
                assert source.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", source.sha256)
                assert source.md5 is None or re.fullmatch(r"[0-9a-f]{32}", source.md5)
                assert source.size is None or source.size > 0
