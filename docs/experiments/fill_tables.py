"""Refresh the generated tables of docs/why-models.md from result files (see why_models.py).

    python docs/experiments/fill_tables.py docs/experiments/why_models*.json
"""

import re
import subprocess
import sys
from pathlib import Path

KINDS = (("alm options", "VARIANT_TABLE"), ("free-run MSE | weight norm", "COMPARE_TABLE"),
         ("incl. compiling", "LIFTED_TABLE"))


def main(files):
    out = subprocess.run([sys.executable, "docs/experiments/why_models.py", "--tables", *files],
                         check=True, capture_output=True, text=True).stdout
    tabs = {}
    for block in (b.strip() for b in out.strip().split("\n\n")):
        for needle, key in KINDS:
            if needle in block:
                tabs[key] = block
                break
    doc = Path("docs/why-models.md")
    s = doc.read_text()
    for key, table in tabs.items():
        start, end = f"<!-- {key} -->", f"<!-- /{key} -->"
        block = f"{start}\n{table}\n{end}"
        if start not in s:
            s = s.replace(key, block)  # the first fill: a bare placeholder
        else:
            s = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _m, b=block: b, s,
                       flags=re.DOTALL)
    doc.write_text(s)


if __name__ == "__main__":
    main(sys.argv[1:])
