"""Running a CAN on signals of any length: chunk/segment plans and crossfades (``plan``), the engines
(OpenVINO, onnxruntime and torch, ``engines``), a model directory read once for them (``load``), the
inference and export forms of the network (``networks``, torch only). Importing this package imports no torch."""

from hushnet.inference.choice import ENGINES, PRECISIONS, choose_precision
from hushnet.inference.engines import (
    Engine,
    OnnxEngine,
    OpenVinoEngine,
    TorchEngine,
    load_engine,
    resolve_engine,
)
from hushnet.inference.load import ModelRecord, read_model
from hushnet.inference.plan import Enhancer, Scheme

__all__ = [
    "ENGINES",
    "PRECISIONS",
    "Engine",
    "Enhancer",
    "ModelRecord",
    "OnnxEngine",
    "OpenVinoEngine",
    "Scheme",
    "TorchEngine",
    "choose_precision",
    "load_engine",
    "read_model",
    "resolve_engine",
]
