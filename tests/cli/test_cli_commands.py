"""`dupnet` refuses to start when one of its command modules is broken or missing, naming the
module and the exception (it used to drop a missing command from --help silently)."""
from __future__ import annotations

import importlib
import types

import pytest

import dupnet.cli as cli


def _break(monkeypatch, command: str, result):
    """Make ``import dupnet.commands.<command>`` raise ``result`` (or return it)."""
    real = importlib.import_module

    def import_module(name, *a, **kw):
        if name == f"dupnet.commands.{command}":
            if isinstance(result, BaseException):
                raise result
            return result
        return real(name, *a, **kw)
    monkeypatch.setattr(cli, "importlib", types.SimpleNamespace(import_module=import_module))


@pytest.mark.parametrize("command,exc,says", [
    ("rtl", RuntimeError("boom in rtl"), "RuntimeError: boom in rtl"),
    ("sim", ImportError("cannot import name 'gone'"), "ImportError: cannot import name 'gone'"),
    ("report", ModuleNotFoundError("No module named 'dupnet.commands.report'",
                                   name="dupnet.commands.report"), "ModuleNotFoundError"),
])
def test_broken_command_module_fails_loudly(monkeypatch, capsys, command, exc, says):
    _break(monkeypatch, command, exc)
    assert cli.main(["table"]) == 1                 # any command: the install is broken
    err = capsys.readouterr().err
    assert f"dupnet: error: command module dupnet.commands.{command} failed to import" in err
    assert says in err
    with pytest.raises(cli.CommandImportError, match=f"dupnet.commands.{command}"):
        cli.build_parser()


def test_command_module_without_its_functions(monkeypatch, capsys):
    _break(monkeypatch, "detect", types.SimpleNamespace(HELP="detect things"))
    assert cli.main(["--help"]) == 1
    err = capsys.readouterr().err
    assert "dupnet.commands.detect lacks add_arguments, run" in err


def test_every_command_loads():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == cli.COMMANDS
