"""The HTTP API's routers: ``denoise`` (one file in, one file out; health) and ``jobs``."""
