"""Run one command and report its own wall time and peak memory (standard library only).

    python bench/maxrss.py REPORT.json -- COMMAND [ARGS...]

The command inherits stdin, stdout and stderr; this wrapper's exit code is the command's.
`REPORT.json` gets {"wall_s", "maxrss_kb", "returncode"}. The wrapper has exactly one child, so
`RUSAGE_CHILDREN` here is that command's peak resident set (the largest of it and the
descendants it waited for) — measured in the benchmark's own process, `RUSAGE_CHILDREN`
would be the maximum over every sync run so far.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    """Run `argv[2:]` (after `REPORT --`), write the report, return the command's exit code."""
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    report, command = argv[0], argv[2:]
    started = time.perf_counter()
    returncode = subprocess.call(command)
    wall_s = time.perf_counter() - started
    maxrss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    with open(report, "w", encoding="utf-8") as out:
        json.dump({"wall_s": wall_s, "maxrss_kb": maxrss_kb, "returncode": returncode}, out)
    return returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
