"""docs/architecture.md's tables of the family contract, the layout's fields and the reader's
records name exactly the members the code defines."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from bertconv.families.base import CAPABILITIES, OPTIONAL, REQUIRED, SERVICES, Layout
from bertconv.formats.base import SourceRecords

ARCHITECTURE = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


def table_members(heading: str) -> list[str]:
    """The names in the first column of the table under the heading that begins ``heading``
    (each backticked name, without its arguments)."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    start = next(m.end() for m in re.finditer(r"^### (.*)$", text, re.M) if m.group(1).startswith(heading))
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("### ") or line.startswith("## "):
            break
        if line.startswith("| ") and not line.startswith("| ---"):
            rows.append(line.split("|")[1])
    names = []
    for cell in rows[1:]:  # the first row is the header
        names += [re.match(r"[A-Za-z_]\w*", item).group(0) for item in re.findall(r"`([^`]+)`", cell)]
    return names


@pytest.mark.parametrize("heading, members", [
    ("`Family`: required", REQUIRED),
    ("`Family`: optional facts", OPTIONAL),
    ("`Family`: capabilities", CAPABILITIES),
    ("`Family`: services", SERVICES),
    ("`Layout`: fields", tuple(f.name for f in dataclasses.fields(Layout))),
    ("What a reader records", tuple(n for n in dir(SourceRecords) if not n.startswith("_"))),
])
def test_contract_tables_match_the_code(heading, members):
    documented = table_members(heading)
    assert len(documented) == len(set(documented)), f"a member is listed twice under {heading}"
    assert set(documented) == set(members), (f"under {heading}: documented but not in the code "
                                             f"{sorted(set(documented) - set(members))}, in the code but not "
                                             f"documented {sorted(set(members) - set(documented))}")
