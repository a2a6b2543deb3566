"""The errors a user can fix. The CLI prints their message as one line and exits with status 2.

Every such error derives from :class:`UserError`. This module imports nothing heavy, so that
checking an error never imports TensorFlow (``dpcnn download`` and ``dpcnn --help`` start fast).
The built-in base classes (``ValueError``, ``FileNotFoundError`` …) stay, so code that catches
those keeps working.
"""

from __future__ import annotations

import os


class UserError(Exception):
    """Something the user can fix; the message says what and how."""


class ConfigError(UserError, ValueError):
    """A configuration value, key or file is invalid."""


class DataError(UserError, ValueError):
    """A dataset file is malformed as a whole (not one bad item: those are counted exclusions)."""


class DataNotFoundError(UserError, FileNotFoundError):
    """A dataset file or folder is missing; the message says which, which key sets it, how to get it."""


class WordVectorsError(UserError, ValueError):
    """A word-vector file that cannot be used; the message names the file, where, and what to do."""


class DownloadError(UserError, RuntimeError):
    """A download failed. ``resumable`` is True when a ``.part`` file was kept for a later resume."""

    def __init__(self, message: str, *, url: str = "", resumable: bool = False) -> None:
        super().__init__(message)
        self.url = url
        self.resumable = resumable


# the errors of dpcnn.data.download

class ChecksumError(DownloadError):
    """The downloaded bytes do not have the published size or checksum (the file was removed)."""

    def __init__(self, url: str, path: os.PathLike, algorithm: str, expected: str, actual: str) -> None:
        super().__init__(
            f"{algorithm} mismatch for {url}\n  expected {algorithm}: {expected}\n"
            f"  actual   {algorithm}: {actual}\nThe downloaded file ({path}) was removed. Run the "
            "command again; if it fails the same way, the file on the server is not the one dpcnn "
            "knows (report it).",
            url=url,
        )
        self.path, self.algorithm, self.expected, self.actual = path, algorithm, expected, actual


class UnsafeArchiveError(DownloadError, ValueError):
    """An archive member that would land outside the target, or a link or special file."""

    def __init__(self, archive: os.PathLike, member: str, reason: str) -> None:
        super().__init__(f"refusing to extract {archive}: member {member!r} {reason}", url="")
        self.archive, self.member, self.reason = archive, member, reason


class MissingDependencyError(UserError, ImportError):
    """A package that one feature needs is not installed; the message names the pip install."""


class ManualDownloadRequired(UserError, RuntimeError):
    """The dataset cannot be fetched automatically; the message holds the manual steps."""


class UnknownItemError(ConfigError):
    """The name is not in the download registry; the message lists the valid names."""


class RunError(UserError, RuntimeError):
    """A run folder cannot be used as asked (missing, foreign, finished, another config)."""


class DivergedError(UserError, RuntimeError):
    """The loss became NaN/inf; the message says where the last good weights are."""


class WeightsUnavailableError(UserError, RuntimeError):
    """ImageNet weights could not be loaded; the message names the file and where to put it."""


class SearchError(UserError, ValueError):
    """A query or gallery that cannot be searched."""


def is_user_error(error: BaseException) -> bool:
    """True for errors whose message tells the user what to do (a UserError, or an OS error such
    as a missing file, a permission problem or a full disk, whose message names the path)."""
    return isinstance(error, (UserError, OSError))
