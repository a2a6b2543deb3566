"""One run folder, one writer: the lock that ``dpcnn train`` holds on its run folder.

    DIR/train.lock     {"host", "pid", "since", "token", "command"}; its mtime is the heartbeat

A second ``dpcnn train`` of the same folder (a re-run notebook cell, a second terminal, a second
Colab session on the same Drive folder) stops with one line that names the holder. A lock whose
holder is gone is taken over with a logged note: on the same host when its process no longer
exists, on another host (a Colab session that died) when its heartbeat — the file's mtime,
touched every ``HEARTBEAT_S`` by a daemon thread, with no new file (Drive keeps no trash of it) —
is older than ``STALE_AFTER_S``. ``eval``, ``search`` and ``export`` take no lock: they read only
finished stages.

Known limit: two processes that find the same stale lock at the same moment may both take it
over (each renames it away, then creates its own with O_EXCL: one of them wins the creation,
the other stops with the usual one line).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

from dpcnn.errors import RunError

log = logging.getLogger(__name__)

LOCK = "train.lock"
HEARTBEAT_S = 60.0
STALE_AFTER_S = 600.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class RunLock:
    """``with RunLock(folder):`` — hold the training lock of a run folder (created if missing).

    ``clock``: wall-clock seconds (``time.time``), replaceable for tests.
    """

    def __init__(self, folder: str | os.PathLike, heartbeat_s: float = HEARTBEAT_S,
                 stale_after_s: float = STALE_AFTER_S, clock=time.time):
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.heartbeat_s, self.stale_after_s, self.clock = heartbeat_s, stale_after_s, clock
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._created_folder = False

    # -- holder ------------------------------------------------------------------------------
    def holder(self) -> dict | None:
        """The lock's contents (plus ``age_s``: seconds since its last heartbeat), or None."""
        try:
            age = self.clock() - self.path.stat().st_mtime
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            info = json.loads(text)
        except ValueError:
            info = {}  # a lock being written, or damaged: judged by its heartbeat alone
        return {**(info if isinstance(info, dict) else {}), "age_s": max(age, 0.0)}

    def stale_reason(self, holder: dict) -> str | None:
        """Why the holder is gone (the lock may be taken over), or None while it may be alive."""
        same_host = holder.get("host") == socket.gethostname()
        pid = holder.get("pid")
        if same_host and isinstance(pid, int) and not _alive(pid):
            return f"its process {pid} on this host no longer exists"
        if holder["age_s"] > self.stale_after_s:
            return f"it gave no sign of life for {_ago(holder['age_s'])}"
        return None

    def _describe(self, holder: dict) -> str:
        return (f"host {holder.get('host', '?')}, PID {holder.get('pid', '?')}, since {holder.get('since', '?')}, "
                f"last sign of life {_ago(holder['age_s'])} ago")

    # -- acquire / release -------------------------------------------------------------------
    def acquire(self) -> RunLock:
        if not self.folder.exists():
            self.folder.mkdir(parents=True)
            self._created_folder = True
        for _ in range(3):
            if self._create():
                self._start_heartbeat()
                return self
            holder = self.holder()
            if holder is None:
                continue  # released in between: try again
            reason = self.stale_reason(holder)
            if reason is None:
                raise RunError(
                    f"{self.folder} is being trained by another process ({self._describe(holder)}): let it finish or "
                    f"stop it; a lock whose process is gone is taken over (at once on this host; from another host "
                    f"after {_ago(self.stale_after_s)} without a sign of life), or delete {self.path} if you are sure")
            log.warning("taking over the lock of %s held by %s: %s", self.folder, self._describe(holder), reason)
            aside = self.path.with_name(f"{LOCK}.stale-{self.token}")
            try:
                os.replace(self.path, aside)
                aside.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
        raise RunError(f"could not take the training lock of {self.folder} (another process keeps taking it)")

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        info = {"host": socket.gethostname(), "pid": os.getpid(),
                "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "token": self.token, "command": " ".join(sys.argv)[:300]}
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.heartbeat_s):
                try:
                    os.utime(self.path)
                except OSError as err:  # the folder went away (--overwrite by hand, an unmounted Drive)
                    log.warning("could not refresh the training lock %s: %s", self.path, err)

        self._thread = threading.Thread(target=beat, name="dpcnn-run-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        holder = self.holder()
        if holder is not None and holder.get("token") == self.token:
            self.path.unlink(missing_ok=True)
        if self._created_folder and self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()  # the run never started: leave no empty folder behind

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
