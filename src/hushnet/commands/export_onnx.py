"""``hushnet export-onnx``: write a model directory's network as one ONNX file, checked against torch."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from hushnet.options import MODEL_HELP, option


@dataclass
class ExportConfig:
    """One ``hushnet export-onnx`` job."""

    model: str = option(positional=True, help=MODEL_HELP)
    output: str = option(short="-o", help="the .onnx file to write (MODEL_DIR/model.onnx for the runtime)")


def export_model(
    path_or_name: str | os.PathLike | None, output: str | os.PathLike, check_seconds: float = 3.0
) -> tuple[Path, float | None]:
    """Load a model directory, write its ONNX file, and compare onnxruntime's output with torch's on
    ``check_seconds`` of noise (max abs difference; None without onnxruntime)."""
    import numpy as np
    import torch

    from hushnet.inference.engines import installed
    from hushnet.inference.networks import export_onnx
    from hushnet.model_dir import fingerprint_metadata, load_model, resolve_model_dir

    model = load_model(path_or_name, kind="can")
    path = export_onnx(model, output, fingerprint_metadata(resolve_model_dir(path_or_name)))
    if not installed("onnxruntime"):
        return path, None
    import onnxruntime as ort

    x = (0.05 * np.random.default_rng(0).standard_normal((2, int(check_seconds * model.config.sample_rate)))).astype(
        np.float32
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    return path, float(np.abs(session.run(None, {"audio": x})[0] - expected).max())


def run(config: ExportConfig) -> int:
    """Export, check against torch, print the file and the difference; 2 for a model or output that cannot be used."""
    from hushnet.errors import one_line
    from hushnet.model_dir import ModelError, onnx_output_error

    refusal = onnx_output_error(config.output)
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    try:
        path, error = export_model(config.model, config.output)
    except ModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the hidden temporary's name means nothing to the user: name the output
        print(f"error: cannot write {config.output}: {one_line(error)}", file=sys.stderr)
        return 2
    print(
        f"{path} (onnxruntime vs torch on 3 s of noise: max abs difference {error:.1e})"
        if error is not None
        else str(path)
    )
    return 0
