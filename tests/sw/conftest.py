"""Fixtures of the software tests."""
import pytest


@pytest.fixture
def one_torch_thread():
    """One torch thread while a test runs: CI runs two pytest workers on two cores."""
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
