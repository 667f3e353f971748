"""`rlsft power`: minimum detectable effects from a pilot's per-problem changes."""

import json
import random

from rlsft.cli import main as cli_main
from rlsft.verdicts.power import Spread, minimum_detectable_effect, spread


def write_samples(folder, rates: dict[str, float], samples: int, rng: random.Random) -> None:
    folder.mkdir(parents=True)
    rows = [{"id": pid, "sample": j, "correct": rng.random() < p, "correct_lenient": rng.random() < p, "format_ok": True, "mixed": False,
             "length": 10} for pid, p in rates.items() for j in range(samples)]
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_power_reads_a_pilot_and_more_problems_or_seeds_detect_less(tmp_path, capsys):
    rng = random.Random(0)
    rates = {f"p{i}": rng.random() for i in range(40)}
    write_samples(tmp_path / "pilot" / "eval_before" / "micro-arith", rates, 4, rng)
    write_samples(tmp_path / "pilot" / "eval_curve" / "step-11" / "micro-arith", {k: min(1.0, v + 0.2) for k, v in rates.items()}, 2, rng)
    out = tmp_path / "power.md"
    assert cli_main(["power", str(tmp_path / "pilot"), "--at", "11", "--seeds", "4", "8", "--problems", "64", "128", "--out", str(out)]) == 0
    table = out.read_text()
    assert table == capsys.readouterr().out and "| accuracy |" in table and "MDE 8 seeds x 128 x 4" in table
    row = next(line for line in table.splitlines() if line.startswith("| accuracy |")).split("|")
    mde = [float(x) for x in row[6:10]]  # 4x64, 4x128, 8x64, 8x128
    assert mde[1] < mde[0] and mde[2] < mde[0] and mde[3] == min(mde)
    # a pilot lacking the asked-for evaluation, or asked for fewer than 2 seeds, is refused in one line
    assert cli_main(["power", str(tmp_path / "pilot"), "--at", "after"]) == 2  # no evaluation after training: one line
    assert "no micro-arith samples at after" in capsys.readouterr().err
    assert cli_main(["power", str(tmp_path / "pilot"), "--at", "11", "--seeds", "2"]) == 2  # fewer than 3 seeds: a pilot, no verdict


def test_the_spread_separates_sampling_from_how_problems_respond():
    same = {f"p{i}": 0.5 for i in range(50)}
    moved = {f"p{i}": (1.0 if i % 2 else 0.0) for i in range(50)}  # half the problems learned, half unlearned: no mean change
    s = spread(same, moved, 4, 4)
    # the changes (+-0.5) vary by 0.255; the before side's 4 samples at 0.5 explain 0.083 of it, the rest is between problems
    assert abs(s.change) < 1e-12 and abs(s.tau2 - (0.25 * 50 / 49 - 0.25 * 4 / 3 / 4)) < 1e-9
    assert minimum_detectable_effect(s, 4, 128, 4) > minimum_detectable_effect(Spread(0.0, 0.0, s.sampling, 50), 4, 128, 4)
