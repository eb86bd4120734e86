"""Writes a test fixture as JSON that stays readable in a diff: indented,
with each list of numbers on one line. Shared by the reference scripts."""

import json
import re
import sys


def write_fixture(path, fixture):
    text = json.dumps(fixture, ensure_ascii=False, indent=1)
    text = re.sub(
        r"\[\s*(-?[0-9][-0-9.e+,\s]*?)\s*\]",
        lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
        text,
    )
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print(f"wrote {path}", file=sys.stderr)
