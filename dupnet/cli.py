"""The ``dupnet`` command. Each subcommand lives in ``dupnet/commands/<name>.py`` and defines
``HELP`` (one line), ``DESCRIPTION`` (the --help text), ``add_arguments(parser)`` and
``run(args) -> int``; heavy imports (torch, amaranth) happen inside ``run`` so that
``dupnet --help`` stays fast."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from . import __version__
from .errors import DupnetError

# order is the order of --help
COMMANDS = ["table", "init", "train", "eval", "export", "export-onnx", "import-onnx", "detect",
            "rtl", "weights", "sim", "report", "flow", "explore", "regress"]


class CommandImportError(DupnetError):
    """A command module in :data:`COMMANDS` is missing or fails to import: a broken install or
    a bug, reported with the module's name and the exception instead of hiding the command."""


def _load(name: str):
    module = f"dupnet.commands.{name.replace('-', '_')}"   # export-onnx: export_onnx.py
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - any failure of a command module is reported
        where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        at = f" (at {where.filename}:{where.lineno})" if where else ""
        raise CommandImportError(f"command module {module} failed to import: "
                                 f"{type(e).__name__}: {e}{at}") from e
    missing = [a for a in ("HELP", "add_arguments", "run") if not hasattr(mod, a)]
    if missing:
        raise CommandImportError(f"command module {module} lacks {', '.join(missing)}")
    return mod


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dupnet",
        description="DupNet co-design toolkit: train and quantize a binary-weight DupNet face "
                    "detector, export its integer artifact, generate and verify the FPGA "
                    "accelerator, and report its FPGA budget.",
        epilog="Run `dupnet COMMAND --help` for the options of each command.")
    parser.add_argument("--version", action="version", version=f"dupnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = _load(name)
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # before torch loads: OpenMP's default busy-waiting makes 2 threads on contended cores
    # several times slower (measured in docs/training.md)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        parser = build_parser()
    except CommandImportError as e:
        print(f"dupnet: error: {e}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except DupnetError as e:
        print(f"dupnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dupnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
