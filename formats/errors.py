"""The one exception type for bad input files. The CLI turns it into a one-line error, exit 2."""


class InputError(ValueError):
    """A file or folder the user gave us is missing, malformed or unsupported."""
