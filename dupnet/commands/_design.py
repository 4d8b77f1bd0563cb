"""Options shared by the commands that build a design (rtl, weights, report, sim): the device
a design is chosen for (``--device``, ``--fps``, ``--clock-mhz``) and the folding from them
(:func:`dupnet.hw.budget.devicefit.select_folding`). Not a command itself."""
from __future__ import annotations

__all__ = ["add_device_arguments", "folding_for"]


def add_device_arguments(p, fps: bool = True) -> None:
    """``--device NAME``; with ``fps``, ``--fps F`` and ``--clock-mhz MHZ``."""
    p.add_argument("--device", metavar="NAME",
                   help="choose the folding and the memory mapping for this FPGA (a name of "
                        "the device file: ice40-up5k, ecp5-25f, artix7-35t): the most frames/s "
                        "whose calibrated estimate fits with a margin (weights loaded at run "
                        "time into SPRAM, or streamed from a shared SPRAM bank with the "
                        "thresholds, where the block RAM does not hold them); an error names "
                        "the binding resource when nothing fits")
    if fps:
        p.add_argument("--fps", type=float, metavar="F",
                       help="the smallest design that meets F frames/s at the clock of "
                            "--device (its expected clock) or --clock-mhz (default 100)")
        p.add_argument("--clock-mhz", type=float, metavar="MHZ",
                       help="the clock --fps is met at (default: the device's, or 100 MHz)")


def folding_for(config, args, preadd: bool = True, pixels_per_beat: int = 1):
    """The folding and how it was chosen, from a command's folding options (``--folding``,
    ``--target-cycles``, ``--lut-budget`` where it has them) and device options."""
    from dupnet.errors import DupnetError
    from dupnet.hw.budget.devicefit import select_folding
    device = getattr(args, "device", None)
    chosen = [f"--{n.replace('_', '-')}" for n in ("folding", "target_cycles", "lut_budget")
              if getattr(args, n, None) is not None]
    if device and chosen:
        raise DupnetError(f"--device chooses the folding; it cannot be combined with "
                          f"{', '.join(chosen)}")
    fps = getattr(args, "fps", None)
    if fps is not None and chosen:
        raise DupnetError(f"--fps chooses the folding; it cannot be combined with "
                          f"{', '.join(chosen)}")
    if getattr(args, "clock_mhz", None) is not None and fps is None:
        raise DupnetError("--clock-mhz is the clock of --fps; give --fps too")
    return select_folding(config, getattr(args, "folding", None),
                          getattr(args, "target_cycles", None), getattr(args, "lut_budget", None),
                          preadd=preadd, pixels_per_beat=pixels_per_beat, device=device,
                          fps=fps, clock_mhz=getattr(args, "clock_mhz", None))
