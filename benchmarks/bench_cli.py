"""How long ``geotessera-registry --help`` takes, against the floor of starting Python and
importing click (the CLI's one unavoidable import). Target: --help under 0.3 s on an idle
machine. Prints one line per measurement (median of N runs, wall clock).

    python benchmarks/bench_cli.py [N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {
    "python -c pass": "pass",
    "import click": "import click",
    "geotessera-registry --help": "from geotessera.cli import main; main(['--help'])",
    "geotessera-registry sample --help":
        "from geotessera.cli import main; main(['sample', '--help'])",
}


def _median_s(code: str, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    for label, code in CASES.items():
        print(f"{label:40s} {_median_s(code, n):6.3f} s (median of {n})")


if __name__ == "__main__":
    main()
