#!/usr/bin/env python3
"""Where the time of `make test` went: each step (target/make-test-steps.tsv, written by
infra/scripts/timed.sh) and, for the test step, each test binary (the sum of its tests' times
and its longest test, from cargo-nextest's JUnit report, target/nextest/default/junit.xml).
Tests of different binaries run side by side, so the binaries' sums add up to more than the
step's wall time."""

import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

steps = Path("target/make-test-steps.tsv")
junit = Path("target/nextest/default/junit.xml")

if not steps.exists():
    sys.exit("no target/make-test-steps.tsv: run `make test` first")

print("make test, per step (wall time):")
total = 0.0
for line in steps.read_text().splitlines():
    name, seconds, status = line.split("\t")
    mark = "" if status == "0" else f"  (exit {status})"
    total += float(seconds)
    print(f"  {name:<14} {float(seconds) / 60:5.1f} min  {float(seconds):7.1f} s{mark}")
print(f"  {'total':<14} {total / 60:5.1f} min  {total:7.1f} s")

if junit.exists():
    per_binary = defaultdict(lambda: [0.0, 0.0, 0, ""])
    for case in ET.parse(junit).getroot().iter("testcase"):
        binary = case.get("classname", "?")
        seconds = float(case.get("time", "0"))
        entry = per_binary[binary]
        entry[0] += seconds
        entry[2] += 1
        if seconds > entry[1]:
            entry[1], entry[3] = seconds, case.get("name", "")
    print("\ntests, per binary (sum of its tests' times; its longest test):")
    for binary, (summed, longest, count, name) in sorted(
        per_binary.items(), key=lambda kv: -kv[1][0]
    ):
        print(f"  {binary:<28} {count:3d} tests {summed:7.1f} s   longest {longest:6.1f} s  {name}")
