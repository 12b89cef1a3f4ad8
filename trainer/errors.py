"""Errors the trainer reports to users (the CLI prints them without a traceback)."""


class DataError(ValueError):
    """Input data is unusable; the message names the file, line and field."""


class TrainingError(RuntimeError):
    """A training run cannot start or continue; the message says what to do."""
