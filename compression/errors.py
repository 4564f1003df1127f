"""The one exception type that crosses the backend boundary with a message meant for people."""


class LabError(Exception):
    """A user-facing error. Its message is one clear line: what went wrong and what to do instead."""
