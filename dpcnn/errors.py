"""The exceptions that mean "the user can fix this": the CLI prints their message, not a traceback."""

from __future__ import annotations


def _user_errors() -> tuple[type[BaseException], ...]:
    from dpcnn.callbacks import DivergedError
    from dpcnn.config import ConfigError
    from dpcnn.data.sources import DataNotFoundError
    from dpcnn.data.word_vectors import WordVectorsError
    from dpcnn.model.image_branch import WeightsUnavailableError
    from dpcnn.run_dir import RunDirError

    return (ConfigError, DataNotFoundError, WordVectorsError, WeightsUnavailableError, RunDirError,
            DivergedError, FileNotFoundError)


USER_ERRORS = _user_errors()
