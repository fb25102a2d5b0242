"""Top frames of a py-spy recording in collapsed form (``py-spy record --format raw``): self and total %.

    python bench/pyspy_top.py /tmp/prof/up.txt [--top 25] [--match gateway/]

Self: samples whose innermost frame is the function. Total: samples with the function anywhere on the
stack (counted once a sample). ``--match`` keeps only functions whose file contains that text;
``--thread`` keeps only one thread's stacks (of a recording made with ``--threads``).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for root in ("site-packages/", "/work/main/", "lib/python3"):
        if root in path:
            path = path.split(root, 1)[1]
    return f"{match['func']} ({path})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="")
    parser.add_argument("--thread", default="", help="only stacks of threads whose name contains this "
                        "(a recording made with --threads), e.g. MainThread")
    args = parser.parse_args()
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in args.path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        if args.thread and args.thread not in stack.split(";", 1)[0]:
            continue
        samples += n
        frames = [frame_name(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for name in set(frames):
            total[name] += n
    print(f"{samples} samples")
    print(f"{'self %':>7} {'total %':>8}  function (file)")
    keep = [f for f in total if args.match in f]
    for name in sorted(keep, key=lambda f: -own[f])[: args.top]:
        print(f"{own[name] / samples * 100:7.1f} {total[name] / samples * 100:8.1f}  {name}")
    print("-- by total")
    for name in sorted(keep, key=lambda f: -total[f])[: args.top]:
        print(f"{own[name] / samples * 100:7.1f} {total[name] / samples * 100:8.1f}  {name}")


if __name__ == "__main__":
    main()
