import subprocess, sys, re
files = sys.argv[1:]
out = subprocess.run([sys.executable, "docs/experiments/why_models.py", "--tables", *files], capture_output=True, text=True).stdout
blocks = [b.strip() for b in out.strip().split("\n\n")]
# identify
tabs = {}
for b in blocks:
    if "alm options" in b: tabs["VARIANT_TABLE"] = b
    elif "free-run MSE | weight norm" in b: tabs["COMPARE_TABLE"] = b
    elif "incl. compiling" in b: tabs["LIFTED_TABLE"] = b
p = "docs/why-models.md"
s = open(p).read()
for k, v in tabs.items():
    # replace placeholder or previously generated block between markers
    start, end = f"<!-- {k} -->", f"<!-- /{k} -->"
    blk = f"{start}\n{v}\n{end}"
    if k in s and start not in s:
        s = s.replace(k, blk)
    else:
        s = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda m: blk, s, flags=re.S)
open(p, "w").write(s)
