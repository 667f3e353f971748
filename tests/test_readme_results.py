"""The README's results tables say what the committed reports' verdicts.json say: every row, its
verdict, seeds, estimate and both interval bounds to the precision shown, and no row missing or extra."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ("micro-claims", "real-claims-smollm2", "real-claims-qwen-cpu")  # reports/smollm2-claims is the superseded pilot's, not in the README (docs/real-models.md)
NUMBER = r"[+-]?\d+(?:\.\d+)?"


VERDICT = "reproduced|not reproduced|inconclusive|pilot|unmatched"


def readme_rows() -> dict[str, tuple[str, str | None, str, str, str, int]]:
    """{claim id: (verdict, Holm's verdict or None, estimate, low, high, seeds)} from the README's
    claim tables (numbers as shown; the Holm column where the table has one)."""
    rows = {}
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        m = re.match(rf"\| ((?:C|S|R|Q)\S+) .*? \| ({VERDICT}) \| (?:({VERDICT}) \| )?({NUMBER}) \[({NUMBER}), ({NUMBER})\] \| (\d+) \|$", line)
        if m:
            assert m[1] not in rows, f"claim {m[1]} has two rows in the README"
            rows[m[1]] = (m[2], m[3], m[4], m[5], m[6], int(m[7]))
    return rows


def shown_matches(text: str, value: float) -> bool:
    """Does `text` show `value` to its own precision (half a unit of its last digit)? A bare "0"
    must be 0 to three decimals, as the tables write small values with three.

    >>> shown_matches("+0.127", 0.12749), shown_matches("+0.127", 0.1276), shown_matches("0", 0.0004), shown_matches("0", 0.01)
    (True, False, True, False)
    """
    decimals = len(text.split(".")[1]) if "." in text else 3
    return abs(float(text) - value) <= 0.5 * 10 ** -decimals + 1e-12


@pytest.mark.parametrize("report", REPORTS)
def test_every_claim_of_the_report_has_its_readme_row(report):
    rows = readme_rows()
    verdicts = json.loads((ROOT / "reports" / report / "verdicts.json").read_text(encoding="utf-8"))
    assert {v["claim"] for v in verdicts} <= set(rows), f"claims of {report} missing from the README"
    for v in verdicts:
        verdict, holm, estimate, low, high, seeds = rows[v["claim"]]
        assert (verdict, seeds) == (v["verdict"], v["n_seeds"]), v["claim"]
        # a report with Holm's verdicts (verdicts.json names them) needs the README's Holm column
        assert holm == v.get("verdict_holm"), (v["claim"], holm, v.get("verdict_holm"))
        for text, value in ((estimate, v["estimate"]), (low, v["ci_low"]), (high, v["ci_high"])):
            assert value is not None and shown_matches(text, value), (v["claim"], text, value)


def test_no_readme_claim_row_is_extra():
    ids = {v["claim"] for r in REPORTS for v in json.loads((ROOT / "reports" / r / "verdicts.json").read_text(encoding="utf-8"))}
    assert readme_rows() and set(readme_rows()) == ids
