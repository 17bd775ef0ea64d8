"""The errors hushnet reports to its users, and the one way an exception becomes one line for them."""

from __future__ import annotations


class AudioError(ValueError):
    """A file that cannot be read or written as audio; the message is one line for the user."""


def one_line(error: BaseException, *, first: bool = False) -> str:
    """An exception as one short line for the user: an OSError's reason, else the last line of its
    message (where Python and libsndfile put the reason; libsndfile's path prefix removed), or the
    first with ``first`` (where onnxruntime, OpenVINO and torch put theirs, details following)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    lines = str(error).strip().splitlines()
    text = (lines[0] if first else lines[-1]) if lines else ""
    if "': " in text:  # libsndfile: "Error opening '<path>': <reason>"
        text = text.split("': ", 1)[1]
    # Only the ends libsndfile pads with: a message may itself start with a quoted path ('../x' ...).
    return text.strip().rstrip(".").strip() or type(error).__name__
