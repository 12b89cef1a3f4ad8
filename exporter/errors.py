"""Errors the exporter reports to users."""


class ExportError(RuntimeError):
    """The checkpoint cannot be exported or published; the message says why and what to do."""
