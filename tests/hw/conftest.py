"""Small configs and artifacts shared by the hardware tests."""
import pytest

from dupnet.sw.config import parse_config
from dupnet.sw.random_artifact import random_artifact

HEAD = {"classes": 1, "anchors": [[1.0, 1.0]]}


def small_config(name="hwtest"):
    """7x6x3 image; x_dup on first/last, w_dup 2 and 4, stride-2 and stride-1 pools, k=1 head."""
    return parse_config({
        "name": name, "input": {"height": 6, "width": 6, "channels": 3, "bits": 8},
        "head": HEAD,
        "layers": [
            {"kind": "conv", "name": "conv1", "k": 3, "out_channels": 4, "x_dup": 2,
             "act_bits": 2},
            {"kind": "maxpool", "name": "pool1", "stride": 2},
            {"kind": "conv", "name": "conv2", "k": 3, "out_channels": 8, "w_dup": 2,
             "act_bits": 2},
            {"kind": "maxpool", "name": "pool2", "stride": 1},
            {"kind": "conv", "name": "conv3", "k": 3, "out_channels": 4, "w_dup": 4,
             "act_bits": 3},
            {"kind": "conv", "name": "conv4", "k": 1, "out_channels": 6, "x_dup": 2},
        ]})


@pytest.fixture(scope="session")
def small_cfg():
    return small_config()


@pytest.fixture(scope="session")
def small_art(small_cfg):
    return random_artifact(small_cfg, seed=5)


# Components built only to check errors or counts are never elaborated; Amaranth warns about
# them when they are garbage-collected, outside any test's warning filter.
import warnings  # noqa: E402

from amaranth.hdl import UnusedElaboratable  # noqa: E402

warnings.filterwarnings("ignore", category=UnusedElaboratable)
