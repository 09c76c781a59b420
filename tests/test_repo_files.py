"""Committed files: names a shell can use unquoted, and no large files outside results/."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BAD_NAME = re.compile(r"[|\s'\"`*?<>\\]")
MAX_BYTES = 5 * 1024 * 1024  # larger data belongs in results/ (curated) or outside git


def committed() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30)
    return [p for p in out.stdout.decode().split("\0") if p]


def test_bad_name_pattern_catches_what_it_should():
    bad = ["here exp(t) > 0|  grow", "a b.py", "tab\there", "q'uote", 'd"q', "star*.py", "what?", "back\\slash",
           "line\nbreak"]
    assert all(BAD_NAME.search(n) for n in bad)
    assert not any(BAD_NAME.search(n) for n in ["cdsolver/solver.py", "results/osana_digits_part/summary.csv",
                                                "results/fashion/shockley_adam_b128_lr0.08_decay0.85.history.csv"])


def test_committed_file_names_need_no_quoting():
    names = committed()
    assert len(names) > 10
    assert [n for n in names if BAD_NAME.search(n)] == []


def test_no_large_files_outside_results():
    big = [n for n in committed() if not n.startswith("results/") and (ROOT / n).is_file()
           and (ROOT / n).stat().st_size > MAX_BYTES]
    assert big == []
