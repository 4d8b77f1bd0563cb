"""DupNet co-design toolkit: ``dupnet.sw`` (training, export, golden model), ``dupnet.hw``
(Amaranth accelerator generator), ``dupnet.sim`` (cocotb + Verilator benches)."""
__version__ = "0.1.0"
