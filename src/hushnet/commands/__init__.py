"""One module per ``hushnet`` command: its config dataclass (whose fields are its flags) and ``run``.

``cli`` only parses and dispatches; the work is in the modules these call (``denoiser``,
``evaluate``, ``training``, ``serve``, ...).
"""
