"""User-facing errors: the CLI prints their message as one line and exits with status 2."""


class NnxformError(Exception):
    """A problem with the user's input (file, model, domain, options), stated in one line."""


class UnsupportedOperator(NnxformError):
    """The model uses an operator nnxform cannot handle; the message names it and its node."""


class NotExact(NnxformError):
    """A function-preserving pass produced a model that differs from its input beyond tolerance."""
