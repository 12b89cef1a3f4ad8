"""The repository layer's error: a model repository that cannot be read or written as asked."""


class RepositoryError(RuntimeError):
    """The message names the file or folder and what is wrong with it."""
