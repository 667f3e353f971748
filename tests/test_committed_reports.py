"""Every committed report that keeps its runs (`reports/<study>/runs`, from `rlsft study --archive`)
regenerates from that archive to the same verdicts, intervals and tables: a change to the lab
that moves a committed number fails here, not in a reader's hands."""

import json

import pytest
from conftest import REPO

from rlsft.cli import main

ARCHIVED = {"micro-lora": "configs/studies/micro_lora.yaml", "real-claims-smollm2": "configs/studies/real_claims_smollm2.yaml",
            "real-claims-qwen-cpu": "configs/studies/real_claims_qwen_cpu.yaml"}
RUNNING: set[str] = set()  # studies whose archive fills over several sittings: no report until their last run ends


def test_every_archive_is_listed():
    assert {p.parent.name for p in (REPO / "reports").glob("*/runs")} - RUNNING == set(ARCHIVED)
    assert not [name for name in RUNNING if (REPO / "reports" / name / "report.md").exists()]  # reported: move it to ARCHIVED


@pytest.mark.parametrize("name", sorted(ARCHIVED))
def test_a_committed_report_regenerates_from_its_archive(name, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / name
    assert main(["report", f"reports/{name}/runs", "--claims", ARCHIVED[name], "--out", str(out)]) == 0
    committed = REPO / "reports" / name
    assert json.loads((out / "verdicts.json").read_text()) == json.loads((committed / "verdicts.json").read_text())
    assert (out / "readme_table.md").read_text() == (committed / "readme_table.md").read_text()
    assert body(out / "report.md") == body(committed / "report.md")
    assert sorted(p.name for p in out.glob("*.png")) == sorted(p.name for p in committed.glob("*.png"))  # every figure, none stale


def test_a_study_with_curve_checkpoints_reports_format_and_length_at_each():
    """The held-out format rate and length are measurements a study reads at every checkpoint: the
    SmolLM2 study's pure-RL arm, evaluated at step 10 and at the end, has both in its table."""
    lines = (REPO / "reports" / "real-claims-smollm2" / "report.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| arm | step | seeds | PFLOPs |"))
    assert "format rate" in header and "length (tokens)" in header and "no words" in header
    columns = [c.strip() for c in header.strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| r1_zero | ")]
    at = {row[1]: dict(zip(columns, row)) for row in rows if len(row) == len(columns)}
    assert set(at) == {"10", "final"} and all(float(at[s]["length (tokens)"]) > 0 for s in at)
    assert all(0 <= float(at[s]["no words"]) <= 1 for s in at)  # read from the samples, whatever commit evaluated them
    assert "format_length_vs_pflops.png" in "\n".join(lines)


def body(report):
    """A report's text less the line saying when and at which commit it was written."""
    return [line for line in report.read_text().splitlines() if not line.startswith("- report written ")]
