"""The exceptions that mean "the user can fix this": the CLI prints their message, not a traceback.

Matched by qualified class name (through the exception's MRO) so that checking an error never
imports TensorFlow: ``dpcnn download`` and ``dpcnn --help`` start fast.
"""

from __future__ import annotations

USER_ERRORS = frozenset({
    "dpcnn.config.ConfigError",
    "dpcnn.data.sources.DataNotFoundError",
    "dpcnn.data.word_vectors.WordVectorsError",
    "dpcnn.data.download.DownloadError",
    "dpcnn.data.download.UnsafeArchiveError",
    "dpcnn.data.download.UnknownItemError",
    "dpcnn.model.image_branch.WeightsUnavailableError",
    "dpcnn.run_dir.RunDirError",
    "dpcnn.callbacks.DivergedError",
    "builtins.FileNotFoundError",
})


def is_user_error(error: BaseException) -> bool:
    """True for errors whose message tells the user what to do (see USER_ERRORS)."""
    return any(f"{cls.__module__}.{cls.__qualname__}" in USER_ERRORS for cls in type(error).__mro__)
