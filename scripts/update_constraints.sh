#!/usr/bin/env bash
# Regenerates constraints.txt: the exact versions pip resolves for requirements.txt, requirements-vllm.txt and
# requirements-ray.txt together, so that `pip install -r requirements.txt -c constraints.txt` (and
# scripts/install_vllm.sh) give a fresh machine the versions the README's figures were measured with.
#   bash scripts/update_constraints.sh      # after changing a requirements file; commit constraints.txt with it
# It resolves in a throw-away virtual environment (pip's --dry-run --report: nothing is installed). Local
# version labels are dropped (torch==2.13.0, not 2.13.0+cpu): a pin without one also accepts the CUDA build
# of the same version, which a GPU server installs first.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip
"$tmp/venv/bin/python" -m pip install -q --dry-run --ignore-installed --report "$tmp/report.json" \
    -r requirements.txt -r requirements-vllm.txt -r requirements-ray.txt
python3 - "$tmp/report.json" "$("$tmp/venv/bin/python" -c 'import platform; print(platform.python_version())')" \
    > constraints.txt <<'PY'
import json
import sys

report, python = json.load(open(sys.argv[1])), sys.argv[2]
pins = sorted((i["metadata"]["name"], i["metadata"]["version"].split("+")[0]) for i in report["install"])
print("# Exact versions of everything requirements.txt, requirements-vllm.txt and requirements-ray.txt install,")
print(f"# resolved together on Linux x86-64, Python {python} (regenerate: bash scripts/update_constraints.sh).")
print("# Used as `pip install -r requirements.txt -c constraints.txt` and by scripts/install_vllm.sh. Local version")
print("# labels are left out, so torch==2.13.0 is also met by the CUDA build a GPU server installs first.")
for name, version in pins:
    print(f"{name}=={version}")
PY
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pinned packages"
