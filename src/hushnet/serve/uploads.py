"""Multipart uploads streamed straight into a job's folder: ``file`` parts to disk, ``dry`` to the job.

Never holds a whole file in memory, and stops at the byte limit (413) however the body is sent.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import ClientDisconnect

from hushnet.errors import one_line
from hushnet.serve.jobs import FileEntry, Job

MAX_PART_HEADER_BYTES = 65536


class UploadError(Exception):
    """A request body that cannot be taken: status code and one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def too_large(limit_bytes: int) -> UploadError:
    return UploadError(
        413, f"upload too large: over the server's limit of {limit_bytes / 2**20:g} MB (--max-upload-mb)"
    )


class MultipartSink:
    """The parser's callbacks for one request: each ``file`` part becomes a file of ``job``, the
    ``dry`` part its dry/wet value. A problem is kept in ``error`` and raised by the reader."""

    DRY_ERROR = "dry must be a number between 0 and 1"

    def __init__(self, job: Job, max_files: int) -> None:
        self.job, self.max_files = job, max_files
        self.error: UploadError | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.field = self.value = self.text = b""
        self.part: str | None = None
        self.entry: FileEntry | None = None
        self.handle = None

    def callbacks(self) -> dict:
        names = (
            "part_begin",
            "part_data",
            "part_end",
            "header_field",
            "header_value",
            "header_end",
            "headers_finished",
        )
        return {f"on_{name}": getattr(self, name) for name in names}

    def part_begin(self) -> None:
        self.headers, self.part, self.entry, self.handle, self.text = [], None, None, None, b""

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def header_end(self) -> None:
        self.headers.append((self.field.lower(), self.value))
        self.field = self.value = b""

    def headers_finished(self) -> None:
        _, params = parse_options_header(dict(self.headers).get(b"content-disposition", b""))
        self.part = params.get(b"name", b"").decode("utf-8", "replace")
        if self.part != "file":
            return
        if len(self.job.files) >= self.max_files:
            self.error = UploadError(
                400, f"at most {self.max_files} file{'s' if self.max_files > 1 else ''} per request"
            )
            return
        self.entry = self.job.add_file(params.get(b"filename", b"").decode("utf-8", "replace"))
        self.handle = open(self.entry.input, "wb")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.handle is not None:
            self.handle.write(data[start:end])
            self.entry.size += end - start
        elif self.part == "dry":
            self.text += data[start:end]
            if len(self.text) > 32:
                self.error = UploadError(400, self.DRY_ERROR)

    def part_end(self) -> None:
        if self.handle is not None:
            self.close()
        elif self.part == "dry":
            try:
                self.job.dry = float(self.text.decode("ascii", "replace"))
            except ValueError:
                self.job.dry = -1.0
            if not 0.0 <= self.job.dry <= 1.0:
                self.error = UploadError(400, self.DRY_ERROR)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


async def _chunks(request: Request, idle_seconds: float | None) -> AsyncIterator[bytes]:
    """The request body's chunks; UploadError 408 when none arrives for ``idle_seconds``."""
    stream = request.stream().__aiter__()
    while True:
        try:
            yield await asyncio.wait_for(stream.__anext__(), idle_seconds)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise UploadError(408, f"upload stalled: nothing received for {idle_seconds:g} s") from None


async def receive_upload(
    request: Request, job: Job, limit_bytes: int, max_files: int, idle_seconds: float | None = None
) -> None:
    """Stream the request's multipart body into ``job``; UploadError (status, one line) when it cannot
    be taken, or when the client sends nothing for ``idle_seconds`` (its job is then dropped)."""
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise UploadError(400, "send the audio as multipart/form-data with a 'file' field")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit_bytes:
        raise too_large(limit_bytes)
    sink = MultipartSink(job, max_files)
    # Part headers up to 64 KB: a long file name is shortened for display, not a parse error.
    parser = MultipartParser(boundary, sink.callbacks(), max_header_size=MAX_PART_HEADER_BYTES)
    received = 0
    try:
        async for chunk in _chunks(request, idle_seconds):
            received += len(chunk)
            job.touched = time.time()  # a slow upload is in use, not abandoned (see JobStore.expire)
            if received > limit_bytes:
                raise too_large(limit_bytes)
            parser.write(chunk)
            if sink.error is not None:
                raise sink.error
        parser.finalize()
        if declared and declared.isdigit() and received != int(declared):
            raise UploadError(400, f"incomplete upload: {received} bytes received, Content-Length says {declared}")
    except UploadError:
        raise
    except ClientDisconnect:
        raise UploadError(400, "incomplete upload: the client went away") from None
    except MultipartParseError as error:
        raise UploadError(400, f"malformed upload ({one_line(error)})") from None
    except Exception as error:  # anything else the parser or the connection raises
        raise UploadError(400, f"malformed upload ({type(error).__name__})") from None
    finally:
        sink.close()
    check_complete(parser)
    if not job.files:
        raise UploadError(400, "no 'file' field in the upload")


def check_complete(parser: MultipartParser) -> None:
    """A body that stops before its closing boundary (cut off, or longer than its Content-Length,
    which cuts it at that length) is refused: a part of a recording is not the recording."""
    if parser.state != MultipartState.END:
        raise UploadError(400, "incomplete upload: the body ends before the multipart closing boundary")
