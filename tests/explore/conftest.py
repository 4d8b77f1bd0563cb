"""Fixtures of the explore tests: a tiny config file and the fast training options."""
import pytest

from ..tiny_configs import tiny_config_toml

#: one epoch on a handful of built-in images: seconds per variant
FAST = ["--epochs", "1", "--n-train", "16", "--n-test", "8", "--batch-size", "8",
        "--threads", "1", "--quiet"]


@pytest.fixture(scope="session")
def tiny_cfg(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "explore-tiny.toml"
    path.write_text(tiny_config_toml("explore-tiny", size=16, second_pool_stride=1))
    return path
