"""Shared fixtures. The official-size model is built and filled once per session (about 470 MB)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from detect_fixtures import folder, weights  # noqa: F401 (fixtures of the detect tests)

from cornernet_saccade.testing import fill_model

DATA = Path(__file__).parent / "data"

#: The suite's torch thread count; every test starts with it.
SUITE_THREADS = 2
torch.set_num_threads(SUITE_THREADS)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA device; skipped without one (benchmarks/gpu.py runs "
                                       "them: pytest -m cuda)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` skip where CUDA is not available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def filled_official_model():
    """The official CornerNet-Saccade filled with the reference rule (docs/reference.md §B2), in eval mode. Do not modify."""
    from cornernet_saccade import CornerNetSaccade

    return fill_model(CornerNetSaccade()).eval()


@pytest.fixture(autouse=True)
def _restore_thread_count():
    """Commands run in-process with ``--threads N`` (and fixtures) change torch's global thread count;
    results compared bit for bit (the demo trace) depend on it, so every test ends with the suite's."""
    yield
    torch.set_num_threads(SUITE_THREADS)
