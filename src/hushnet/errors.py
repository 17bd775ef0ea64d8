"""The errors hushnet reports to its users, and how an exception becomes one line for them."""

from __future__ import annotations


class AudioError(ValueError):
    """A file that cannot be read or written as audio; the message is one line for the user."""


def one_line(error: BaseException) -> str:
    """An exception as one short line for the user (libsndfile's path prefix removed)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    lines = str(error).strip().splitlines()
    text = lines[-1] if lines else ""
    if "': " in text:  # libsndfile: "Error opening '<path>': <reason>"
        text = text.split("': ", 1)[1]
    # Only the ends libsndfile pads with: a message may itself start with a quoted path ('../x' ...).
    return text.strip().rstrip(".").strip() or type(error).__name__
