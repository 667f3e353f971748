"""The README's results tables say what the committed reports' verdicts.json say."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_rows() -> dict[str, tuple[str, str, int]]:
    """{claim id: (verdict, estimate text, seeds)} from the README's claim tables."""
    rows = {}
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| (C\S+|S\S+) .*? \| (reproduced|not reproduced|inconclusive) \| (.+?) \| (\d+) \|$", line)
        if m:
            rows[m[1]] = (m[2], m[3], int(m[4]))
    return rows


@pytest.mark.parametrize("report", ["micro-claims", "smollm2-claims"])
def test_readme_claims_match_the_committed_report(report):
    rows = readme_rows()
    verdicts = json.loads((ROOT / "reports" / report / "verdicts.json").read_text(encoding="utf-8"))
    checked = 0
    for v in verdicts:
        if v["claim"] not in rows:
            continue
        verdict, estimate, seeds = rows[v["claim"]]
        assert (verdict, seeds) == (v["verdict"], v["n_seeds"]), v["claim"]
        first = float(re.match(r"[+-]?\d+(\.\d+)?", estimate)[0])
        assert abs(first - v["estimate"]) < 0.0015, v["claim"]  # rounded to 3 decimals in the README
        checked += 1
    assert checked >= 6  # every table row is a claim of its report


def test_every_readme_claim_row_comes_from_a_report():
    ids = {v["claim"] for r in ("micro-claims", "smollm2-claims")
           for v in json.loads((ROOT / "reports" / r / "verdicts.json").read_text(encoding="utf-8"))}
    assert readme_rows() and set(readme_rows()) <= ids
