"""Test helpers that ship with the package (stand-ins for assets that need a download)."""

from genreflow.testing.vggish_standin import build_vggish_standin

__all__ = ["build_vggish_standin"]
