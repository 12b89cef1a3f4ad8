"""Errors the exporter reports to users."""

from tuneship.repository import RepositoryError


class ExportError(RepositoryError):
    """The checkpoint cannot be exported or published; the message says why and what to do. A kind of the
    repository layer's error: what catches that (a failed publish) catches this too."""
