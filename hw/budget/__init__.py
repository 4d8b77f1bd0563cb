"""FPGA budget reports: Yosys synthesis and nextpnr place-and-route of the generated
accelerator for target FPGAs, fit / headroom / fmax, the calibrated analytic model beside the
measured figures (docs/report.md)."""
from .devices import (Device, DeviceError, UnknownTargetError, get_device, known_targets,
                      load_devices, parse_targets)
from .fit import FitSummary, ResourceUse, fit_summary, frames_per_second
from .flow import DesignSource, default_cache_dir
from .render import write_report
from .report import DesignInput, build_report, design_input_from_generated

__all__ = ["Device", "DeviceError", "UnknownTargetError", "get_device", "known_targets",
           "load_devices", "parse_targets", "FitSummary", "ResourceUse", "fit_summary",
           "frames_per_second", "DesignSource", "default_cache_dir", "write_report",
           "DesignInput", "build_report", "design_input_from_generated"]
