"""One exception root so the CLI can turn user mistakes into one clear line."""

from __future__ import annotations


class GenreflowError(Exception):
    """Base of every error genreflow raises on purpose; its message is meant for the user."""

    exit_code = 1


class ConfigError(GenreflowError):
    """An option, TOML key or value is wrong; the message names it and the allowed range."""

    exit_code = 2


class DataError(GenreflowError):
    """The data directory, index or store is missing or unusable; the message says what to run."""

    exit_code = 2


class ModelLoadError(GenreflowError):
    """A model (VGGish handle or saved classifier) could not be loaded; the message says how to fix it."""

    exit_code = 3


class StoreWriteError(GenreflowError):
    """A shard or result could not be written (disk full, read-only); finished work is kept."""

    exit_code = 4


class AudioDecodeError(GenreflowError):
    """One audio file cannot be used; callers record the reason and go on with the others."""


class RayStartError(GenreflowError):
    """Ray could not start or be joined (port taken, bad address, auth); the message names Ray's
    log folder and what to try."""

    exit_code = 5
