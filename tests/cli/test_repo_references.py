"""What a user reads points at things that exist: every Makefile target declared .PHONY has a
rule, and no doc or docstring cites the design brief, a file outside the repository."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# the brief cited by section number, by file name, or by its folder outside the repository
# (the pattern is built from pieces so that this file does not match itself)
STALE = re.compile("DESIGN" + r"(\s+section\b|\.md)|\.\./" + "shared/")


def test_every_phony_make_target_has_a_rule():
    mk = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", mk, re.M).group(1).split()
    rules = set(re.findall(r"^([A-Za-z_][\w.-]*)\s*:(?!=)", mk, re.M))
    assert phony and not set(phony) - rules, f"PHONY without a rule: {set(phony) - rules}"


def test_no_reference_to_the_design_brief():
    files = [ROOT / "README.md", ROOT / "Makefile", *(ROOT / "docs").glob("*.md")]
    for top in ("dupnet", "sw", "hw", "sim", "scripts", "tests"):
        files += (ROOT / top).rglob("*.py")
    stale = []
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            if STALE.search(line):
                stale.append(f"{rel}:{i}: {line.strip()}")
    assert not stale, "\n".join(stale)
