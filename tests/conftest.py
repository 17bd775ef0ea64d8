"""Shared fixtures: tiny model directories, small audio files, a tiny corpus (helpers are in helpers.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hushnet.model_dir import save_model

from helpers import tiny_can, tiny_lossnet, write_tiny_corpus


def pytest_addoption(parser: pytest.Parser) -> None:
    # Here, not in tests/robustness/conftest.py: pytest reads options only from the first conftests.
    parser.addoption(
        "--robustness-table",
        action="store_true",
        help="write benchmarks/results/robustness.md and .json from this run's robustness groups",
    )


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Compiled OpenVINO models go to a temporary cache folder, not the user's."""
    import os

    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("models") / "tiny"
    save_model(tiny_can(), directory, "# tiny test model\n")
    return directory


@pytest.fixture
def write_wav(tmp_path):
    def write(name: str, samples: np.ndarray, rate: int = 16000, **options) -> Path:
        path = tmp_path / name
        sf.write(path, samples.T if samples.ndim == 2 else samples, rate, **options)
        return path

    return write


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def tiny_lossnet_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("lossnets") / "tiny"
    save_model(tiny_lossnet(), directory, "# tiny loss network\n")
    return directory
