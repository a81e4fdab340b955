# Helpers shared by the perf/ scripts (sourced, not run).

# Median of the arguments (numbers).
med() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }

# results_section HEADING TEXT: replace the section of perf/RESULTS.md that starts with
# HEADING (up to the next "## " heading) by TEXT, or append TEXT when there is none.
results_section() {
  python3 - perf/RESULTS.md "$1" "$2" <<'PY'
import sys
path, head, section = sys.argv[1], sys.argv[2], sys.argv[3].rstrip() + "\n"
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmark results\n"
i = text.find(head)
if i < 0:
    text = text.rstrip() + "\n\n" + section
else:
    j = text.find("\n## ", i + len(head))
    text = text[:i] + section + ("\n" + text[j + 1:] if j >= 0 else "")
open(path, "w").write(text)
PY
}
