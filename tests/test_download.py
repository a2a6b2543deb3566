"""dpcnn.data.download against a local HTTP server on 127.0.0.1 (nothing contacts the internet).

The server serves bytes made in the test and can honour ``Range``/``If-Range`` (206, 416), ignore
``Range`` (always 200), or cut the connection after N bytes. Registry items are replaced by
test items that point at it; archives for the extraction tests are built in ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import re
import socket
import stat
import tarfile
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType

import pytest
from helpers import serving

from dpcnn.data import download as dl
from dpcnn.errors import DownloadError, UserError
from dpcnn.utils import discard_file

DATA = random.Random(0).randbytes(300_000)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.etags: dict[str, str] = {}
        self.honour_range = True  # False: answer every request with 200 and the whole file
        self.cut_after: int | None = None  # body bytes sent before the connection is cut ...
        self.cuts_left = 0  # ... in this many responses
        self.requests: list[dict[str, str | None]] = []

    def add(self, path: str, data: bytes, etag: str | None = None) -> str:
        self.files[path] = data
        self.etags[path] = etag or f'"{hashlib.sha256(data).hexdigest()[:16]}"'
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_port}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        srv, requested, if_range = self.server, self.headers.get("Range"), self.headers.get("If-Range")
        srv.requests.append({"path": self.path, "range": requested, "if_range": if_range})
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if requested and srv.honour_range and if_range in (None, srv.etags[self.path]):
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
        self.send_header("ETag", srv.etags[self.path])
        self.end_headers()
        if srv.cut_after is not None and srv.cuts_left > 0:
            srv.cuts_left -= 1
            body, self.close_connection = body[: srv.cut_after], True
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    with serving(_Server()) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _propagate_logs(monkeypatch):
    # the CLI's setup_logging() turns propagation off; caplog listens on the root logger
    monkeypatch.setattr(logging.getLogger("dpcnn"), "propagate", True)


def _install(monkeypatch, *files: dl.RemoteFile) -> None:
    """Make ``files`` the registry item "t"."""
    monkeypatch.setattr(dl, "REGISTRY", MappingProxyType({"t": dl.Item("test item", files)}))


def _plain(*sources: dl.Source) -> dl.RemoteFile:
    return dl.RemoteFile("f.bin", sources, subdir="d", expect=("d/f.bin",))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _refused_url() -> str:
    """A URL on a local port that nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/f.bin"


def _write_part(root: Path, data: bytes, state: dict) -> Path:
    (root / "d").mkdir(parents=True, exist_ok=True)
    (root / "d/f.bin.part").write_bytes(data)
    (root / "d/f.bin.part.json").write_text(json.dumps(state))
    return root / "d/f.bin"


# --- one file: verification, resume, restarts ---


def test_verified_download_is_renamed_into_place_and_stamped(server, tmp_path, monkeypatch):
    _install(monkeypatch, _plain(dl.Source(server.add("/f.bin", DATA), sha256=_sha256(DATA), size=len(DATA))))
    assert dl.download("t", tmp_path, progress=False) == [tmp_path / "d/f.bin"]
    assert (tmp_path / "d/f.bin").read_bytes() == DATA
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [".f.bin.verified.json", "f.bin"]
    assert server.requests[0]["range"] is None


def test_second_download_neither_fetches_nor_hashes(server, tmp_path, monkeypatch, caplog):
    _install(monkeypatch, _plain(dl.Source(server.add("/f.bin", DATA), sha256=_sha256(DATA))))
    dl.download("t", tmp_path, progress=False)
    monkeypatch.setattr(dl, "_digest", lambda *a: pytest.fail("hashed again"))
    caplog.set_level(logging.INFO)
    assert dl.download("t", tmp_path, progress=False) == [tmp_path / "d/f.bin"]
    assert len(server.requests) == 1
    assert "already present and verified, skipping" in caplog.text


def test_interrupted_transfer_is_resumed_with_range_and_if_range(server, tmp_path, monkeypatch):
    url, mirror = server.add("/f.bin", DATA), server.add("/mirror.bin", DATA)
    _install(monkeypatch, _plain(dl.Source(url, sha256=_sha256(DATA)), dl.Source(mirror, sha256=_sha256(DATA))))
    server.cut_after, server.cuts_left = 100_000, 1
    with pytest.raises(DownloadError, match="run the same command again to resume") as info:
        dl.download("t", tmp_path, progress=False, retries=0)
    assert info.value.resumable and len(server.requests) == 1  # kept for resuming, not another mirror
    assert (tmp_path / "d/f.bin.part").read_bytes() == DATA[:100_000]
    assert json.loads((tmp_path / "d/f.bin.part.json").read_text())["etag"] == server.etags["/f.bin"]
    assert not (tmp_path / "d/f.bin").exists()

    dl.download("t", tmp_path, progress=False, retries=0)
    assert server.requests[1]["range"] == "bytes=100000-"
    assert server.requests[1]["if_range"] == server.etags["/f.bin"]
    assert (tmp_path / "d/f.bin").read_bytes() == DATA
    assert not (tmp_path / "d/f.bin.part").exists() and not (tmp_path / "d/f.bin.part.json").exists()


def test_transfer_that_breaks_off_is_resumed_within_one_call(server, tmp_path, monkeypatch, caplog):
    _install(monkeypatch, _plain(dl.Source(server.add("/f.bin", DATA), sha256=_sha256(DATA))))
    server.cut_after, server.cuts_left = 123_456, 1
    caplog.set_level(logging.WARNING)
    dl.download("t", tmp_path, progress=False, retries=2)
    assert [r["range"] for r in server.requests] == [None, "bytes=123456-"]
    assert (tmp_path / "d/f.bin").read_bytes() == DATA
    assert "retry 1/2" in caplog.text


@pytest.mark.parametrize(
    "case", ["server ignores Range (200)", "file changed (If-Range -> 200)", "416 (part too long)"]
)
def test_resume_that_the_server_refuses_restarts_from_byte_0(server, tmp_path, monkeypatch, case):
    url = server.add("/f.bin", DATA, etag='"new"')
    _install(monkeypatch, _plain(dl.Source(url, sha256=_sha256(DATA))))
    server.honour_range = not case.startswith("server ignores")
    part = b"x" * (len(DATA) + 10 if case.startswith("416") else 50_000)  # wrong bytes: appending fails
    _write_part(tmp_path, part, {"url": url, "etag": '"old"' if "changed" in case else '"new"'})
    dl.download("t", tmp_path, progress=False, retries=0)
    assert server.requests[0]["range"] == f"bytes={len(part)}-"
    assert [r["range"] for r in server.requests[1:]] == ([None] if case.startswith("416") else [])
    assert (tmp_path / "d/f.bin").read_bytes() == DATA


@pytest.mark.parametrize("what", ["sha256", "md5", "size"])
def test_mismatch_removes_the_bytes_and_shows_expected_and_actual(server, tmp_path, monkeypatch, what):
    url = server.add("/f.bin", DATA)
    actual = {"sha256": _sha256(DATA), "md5": hashlib.md5(DATA).hexdigest(), "size": f"{len(DATA)} bytes"}
    wrong = {"sha256": "ab" * 32, "md5": "cd" * 16, "size": len(DATA) + 1}[what]
    _install(monkeypatch, _plain(dl.Source(url, **{what: wrong})))
    with pytest.raises(dl.ChecksumError) as info:
        dl.download("t", tmp_path, progress=False)
    assert isinstance(info.value, DownloadError)
    assert str(wrong) in str(info.value) and actual[what] in str(info.value)
    assert list((tmp_path / "d").iterdir()) == []  # no file, no .part, no sidecar, no stamp


# --- mirrors ---


def test_failing_mirrors_fall_through_to_the_next_in_order(server, tmp_path, monkeypatch, caplog):
    url = server.add("/f.bin", DATA)
    sources = [dl.Source(server.url("/gone"), sha256=_sha256(DATA)),
               dl.Source(_refused_url(), sha256=_sha256(DATA)), dl.Source(url, sha256=_sha256(DATA))]
    _install(monkeypatch, _plain(*sources))
    caplog.set_level(logging.WARNING)
    dl.download("t", tmp_path, progress=False, retries=0)
    assert (tmp_path / "d/f.bin").read_bytes() == DATA
    assert [r["path"] for r in server.requests] == ["/gone", "/f.bin"]
    assert caplog.text.count("trying the next mirror") == 2


def test_when_every_mirror_fails_one_error_lists_what_each_said(server, tmp_path, monkeypatch):
    url, refused = server.add("/f.bin", DATA), _refused_url()
    _install(monkeypatch, _plain(dl.Source(server.url("/gone")), dl.Source(refused), dl.Source(url, sha256="0" * 64)))
    with pytest.raises(DownloadError, match="from any of its 3 sources") as info:
        dl.download("t", tmp_path, progress=False, retries=0)
    lines = str(info.value).splitlines()
    assert "/gone" in lines[1] and "HTTP 404" in lines[1]
    assert refused in lines[2] and "Check the network connection" in lines[2]
    assert url in lines[3] and "sha256 mismatch" in lines[3]
    assert not (tmp_path / "d/f.bin").exists()


# --- extraction ---


def _zip(path: Path, entries: list[tuple[str, bytes | str]]) -> Path:
    """(name, bytes) is a file, (name, str) a symlink to that target."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in entries:
            info = zipfile.ZipInfo(name)
            if isinstance(content, str):
                info.create_system, info.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
                content = content.encode()
            zf.writestr(info, content)
    return path


def _tar(path: Path, entries: list[tuple[str, bytes | str]], link_type: bytes = tarfile.SYMTYPE) -> Path:
    """(name, bytes) is a file, (name, str) a link (of ``link_type``) to that target."""
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tf:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type, info.linkname = link_type, content
                tf.addfile(info)
            else:
                info.size = len(content)
                tf.addfile(info, io.BytesIO(content))
    return path


@pytest.mark.parametrize("name", ["a.zip", "a.tar", "a.tar.gz"])
def test_download_extracts_skips_excluded_and_checks_the_layout(server, tmp_path, monkeypatch, name):
    build = _zip if name.endswith(".zip") else _tar
    archive = build(tmp_path / name, [("pack/a.txt", b"alpha"), ("pack/sub/b.txt", b"beta"),
                                      ("__MACOSX/._a.txt", b"junk")]).read_bytes()
    url = server.add(f"/{name}", archive)
    rf = dl.RemoteFile(name, (dl.Source(url, sha256=_sha256(archive)),), subdir="x", extract=True,
                       exclude=("__MACOSX/",), expect=("x/pack/a.txt", "x/pack/sub/b.txt"))
    _install(monkeypatch, rf)
    root = tmp_path / "data"
    assert dl.download("t", root, progress=False) == [root / "x/pack/a.txt", root / "x/pack/sub/b.txt"]
    assert (root / "x/pack/sub/b.txt").read_bytes() == b"beta" and not (root / "x/__MACOSX").exists()

    _install(monkeypatch, dl.RemoteFile(name, rf.sources, "y", ("y/pack/missing.txt",), extract=True))
    with pytest.raises(DownloadError, match="did not provide the expected paths: .*missing.txt"):
        dl.download("t", root, progress=False)


_UNSAFE = {
    "dotdot": ([("ok.txt", b"ok"), ("a/../../evil.txt", b"evil")], "a/../../evil.txt", "'..'"),
    "absolute": ([("ok.txt", b"ok"), ("{tmp}/abs-evil.txt", b"evil")], "{tmp}/abs-evil.txt", "absolute"),
    "symlink": ([("ok.txt", b"ok"), ("sub/link", "b.txt")], "sub/link", "link"),  # even one that stays inside
}


@pytest.mark.parametrize("case", sorted(_UNSAFE))
@pytest.mark.parametrize("name", ["a.zip", "a.tar.gz"])
def test_extract_refuses_unsafe_members_before_writing_anything(tmp_path, name, case):
    entries, member, reason = _UNSAFE[case]
    # "{tmp}": an absolute path outside the target folder, in this test's own folder (not /tmp)
    entries = [(path.replace("{tmp}", str(tmp_path)), data) for path, data in entries]
    member = member.replace("{tmp}", str(tmp_path))
    archive = (_zip if name.endswith(".zip") else _tar)(tmp_path / name, entries)
    with pytest.raises(dl.UnsafeArchiveError, match=reason) as info:
        dl.safe_extract(archive, tmp_path / "out")
    assert isinstance(info.value, UserError) and repr(member) in str(info.value)
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "abs-evil.txt").exists()


@pytest.mark.parametrize("kind", [tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_extract_refuses_tar_hard_links_and_special_files(tmp_path, kind):
    archive = _tar(tmp_path / "h.tar", [("ok.txt", b"ok"), ("odd", "ok.txt")], link_type=kind)
    with pytest.raises(dl.UnsafeArchiveError, match="'odd' is a link or special file"):
        dl.safe_extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


# --- --delete-archives ---


_PACK = [("pack/a.txt", b"alpha"), ("pack/sub/b.txt", b"beta")]


def _archive_item(server, tmp_path, monkeypatch, entries=_PACK, published=True,
                  expect=("x/pack/a.txt", "x/pack/sub/b.txt")) -> bytes:
    """Registry item "t": a.zip (extracted into x/) and f.bin (not an archive); returns the zip's bytes."""
    archive = _zip(tmp_path / "a.zip", entries).read_bytes()
    url = server.add("/a.zip", archive)
    source = dl.Source(url, sha256=_sha256(archive), size=len(archive)) if published else dl.Source(url)
    _install(monkeypatch, dl.RemoteFile("a.zip", (source,), subdir="x", extract=True, expect=expect),
             _plain(dl.Source(server.add("/f.bin", DATA), sha256=_sha256(DATA))))
    return archive


def _stamp_of(root: Path) -> dict:
    return json.loads((root / "x/.a.zip.verified.json").read_text())


def test_delete_archives_deletes_the_zip_after_extraction_and_a_second_run_fetches_nothing(
        server, tmp_path, monkeypatch, caplog):
    archive = _archive_item(server, tmp_path, monkeypatch)
    root = tmp_path / "data"
    discarded = []
    monkeypatch.setattr(dl, "discard_file", lambda p: (discarded.append(p), discard_file(p)))
    caplog.set_level(logging.INFO)
    expected = [root / "x/pack/a.txt", root / "x/pack/sub/b.txt", root / "d/f.bin"]
    assert dl.download("t", root, progress=False, delete_archives=True) == expected
    assert discarded == [root / "x/a.zip"]  # through discard_file (truncated first), and only the zip
    assert not (root / "x/a.zip").exists()
    assert (root / "x/pack/a.txt").read_bytes() == b"alpha" and (root / "x/pack/sub/b.txt").read_bytes() == b"beta"
    assert (root / "d/f.bin").read_bytes() == DATA  # not an archive: kept
    stamp = _stamp_of(root)
    assert (stamp["extracted"], stamp["deleted"], stamp["digests"]) == (True, True, {"sha256": _sha256(archive)})
    assert f"deleted {len(archive)} bytes of archives" in caplog.text
    assert sorted(r["path"] for r in server.requests) == ["/a.zip", "/f.bin"]

    caplog.clear()
    monkeypatch.setattr(dl, "_digest", lambda *a: pytest.fail("hashed again"))
    assert dl.download("t", root, progress=False, delete_archives=True) == expected
    assert len(server.requests) == 2 and discarded == [root / "x/a.zip"]
    assert "already present and verified (archive deleted after extraction), skipping" in caplog.text
    assert "deleted 0 bytes of archives" in caplog.text
    assert _stamp_of(root) == stamp


def test_a_deleted_archive_whose_extracted_files_are_gone_is_downloaded_again(server, tmp_path, monkeypatch, caplog):
    archive = _archive_item(server, tmp_path, monkeypatch)
    root = tmp_path / "data"
    dl.download("t", root, progress=False, delete_archives=True)
    (root / "x/pack/sub/b.txt").unlink()
    caplog.set_level(logging.INFO)
    dl.download("t", root, progress=False)  # without the flag: extracted again, the zip now kept
    assert [r["path"] for r in server.requests].count("/a.zip") == 2
    assert f"{root / 'x/a.zip'} was deleted after extraction and {root / 'x/pack/sub/b.txt'} is missing" in caplog.text
    assert (root / "x/pack/sub/b.txt").read_bytes() == b"beta" and (root / "x/a.zip").read_bytes() == archive
    assert (_stamp_of(root)["extracted"], _stamp_of(root)["deleted"]) == (True, False)


def test_delete_archives_through_the_command_line(server, tmp_path, monkeypatch, capsys):
    from dpcnn.cli import main

    archive = _archive_item(server, tmp_path, monkeypatch)
    root = tmp_path / "data"
    argv = ["download", "t", "--root", str(root), "--delete-archives"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [str(root / "x/pack/a.txt"), str(root / "x/pack/sub/b.txt"), str(root / "d/f.bin")]
    assert f"deleted {len(archive)} bytes of archives" in err
    assert not (root / "x/a.zip").exists() and (root / "x/pack/a.txt").read_bytes() == b"alpha"
    assert _stamp_of(root)["deleted"] is True
    requests_made = len(server.requests)
    assert main(argv) == 0
    assert "deleted 0 bytes of archives" in capsys.readouterr().err
    assert len(server.requests) == requests_made == 2


def test_an_emptied_archive_left_by_an_interrupted_delete_is_never_used(server, tmp_path, monkeypatch):
    _archive_item(server, tmp_path, monkeypatch)
    root = tmp_path / "data"
    dl.download("t", root, progress=False, delete_archives=True)
    (root / "x/a.zip").write_bytes(b"")  # interrupted between the truncation and the unlink
    dl.download("t", root, progress=False)  # the stamp says extracted and deleted: skipped
    assert len(server.requests) == 2
    (root / "x/pack/a.txt").unlink()
    dl.download("t", root, progress=False)  # fetched again, not the empty file extracted
    assert [r["path"] for r in server.requests].count("/a.zip") == 2
    assert (root / "x/pack/a.txt").read_bytes() == b"alpha"


@pytest.mark.parametrize("failure", ["unsafe member", "expected path missing"])
def test_delete_archives_keeps_an_archive_whose_extraction_failed(server, tmp_path, monkeypatch, failure):
    if failure == "unsafe member":
        archive = _archive_item(server, tmp_path, monkeypatch, entries=[*_PACK, ("a/../../evil.txt", b"evil")])
        error = dl.UnsafeArchiveError
    else:
        archive = _archive_item(server, tmp_path, monkeypatch, expect=("x/pack/missing.txt",))
        error = DownloadError
    root = tmp_path / "data"
    with pytest.raises(error):
        dl.download("t", root, progress=False, delete_archives=True)
    assert (root / "x/a.zip").read_bytes() == archive
    assert (_stamp_of(root)["extracted"], _stamp_of(root)["deleted"]) == (False, False)
    assert not (tmp_path / "evil.txt").exists()


def test_without_the_flag_the_archive_stays_and_a_later_run_with_it_deletes_it(server, tmp_path, monkeypatch, caplog):
    archive = _archive_item(server, tmp_path, monkeypatch)
    root = tmp_path / "data"
    caplog.set_level(logging.INFO)
    dl.download("t", root, progress=False)
    assert (root / "x/a.zip").read_bytes() == archive and (root / "x/pack/a.txt").exists()
    assert (_stamp_of(root)["extracted"], _stamp_of(root)["deleted"]) == (True, False)
    assert "bytes of archives" not in caplog.text

    dl.download("t", root, progress=False, delete_archives=True)  # verified by its stamp, not fetched
    assert len(server.requests) == 2 and not (root / "x/a.zip").exists()
    assert f"deleted {len(archive)} bytes of archives" in caplog.text and _stamp_of(root)["deleted"] is True


def test_delete_archives_keeps_an_archive_without_a_published_checksum(server, tmp_path, monkeypatch, caplog):
    archive = _archive_item(server, tmp_path, monkeypatch, published=False)
    root = tmp_path / "data"
    caplog.set_level(logging.INFO)
    dl.download("t", root, progress=False, delete_archives=True)
    assert (root / "x/a.zip").read_bytes() == archive and (root / "x/pack/a.txt").exists()
    assert "it has no published checksum" in caplog.text and "deleted 0 bytes of archives" in caplog.text


def test_discard_file_truncates_the_file_before_it_removes_it(tmp_path):
    path, other_name = tmp_path / "a.zip", tmp_path / "hard-link"
    path.write_bytes(b"x" * 1000)
    os.link(path, other_name)  # a second name of the same file, as Drive's trash keeps one
    discard_file(path)
    assert not path.exists()
    assert other_name.stat().st_size == 0  # emptied before the name was removed
    discard_file(tmp_path / "missing")  # no error


# --- names ---


def test_manual_items_explain_the_steps_and_unknown_names_list_the_valid_ones(tmp_path):
    root = tmp_path / "d"
    with pytest.raises(dl.ManualDownloadRequired) as info:
        dl.download("flickr30k", root)
    assert f"{root.as_posix()}/flickr30k/results_20130124.token" in str(info.value)
    assert dl.is_manual("cuhk-pedes") and not dl.is_manual("coco")
    assert f"{root.as_posix()}/cuhk-pedes/reid_raw.json" in dl.manual_instructions("cuhk-pedes", root)
    assert "dpcnn download coco --root" in dl.manual_instructions("coco", root)
    # the datasets behind a form are not download items, but `dpcnn download` takes their names
    assert set(dl.available()) == set(dl.REGISTRY) | {"flickr30k", "cuhk-pedes"}
    assert not {"flickr30k", "cuhk-pedes"} & set(dl.REGISTRY)
    with pytest.raises(dl.UnknownItemError, match="choose one of: coco, cuhk-pedes, emoji, flickr30k") as info:
        dl.download("imagenet", root)
    assert isinstance(info.value, UserError)
