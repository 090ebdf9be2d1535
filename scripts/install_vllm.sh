#!/usr/bin/env bash
# Installs the vLLM engine and Ray into the active Python environment (COLLECTION_BACKEND=vllm or auto), at the
# versions constraints.txt locks.
#   bash scripts/install_vllm.sh          # after `pip install -r requirements.txt -c constraints.txt`
# With an NVIDIA driver (nvidia-smi works): the CUDA build, `pip install vllm`, with the installed (CUDA) torch
# pinned, so pip picks the vLLM release built for it instead of replacing torch; VLLM_SPEC=vllm==X.Y.Z names
# the release. constraints.txt was resolved with the CPU build: should pip find it at odds with the CUDA
# build's own pins, GPU_LOCK=torch-only keeps just the torch pin. Without one: vLLM's CPU build (requirements-vllm.txt), then removes PyPI's
# torchvision/torchaudio/torchcodec, which it drags in built against CUDA torch and which break
# `import transformers.models.qwen2` on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    torch_pin="$(mktemp)"
    trap 'rm -f "$torch_pin"' EXIT
    python -c 'import torch; print(f"torch=={torch.__version__}")' > "$torch_pin"  # e.g. torch==2.13.0+cu128
    lock=(-c constraints.txt)
    [ "${GPU_LOCK:-all}" = torch-only ] && lock=()
    python -m pip install -q "${VLLM_SPEC:-vllm}" -r requirements-ray.txt ${lock[@]+"${lock[@]}"} -c "$torch_pin"
else
    python -m pip install -q -r requirements-vllm.txt -r requirements-ray.txt -c constraints.txt
    python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
fi
python - <<'PY'
import importlib.metadata as md
import transformers.models.qwen2  # noqa: F401  (fails if a CUDA-built torchvision is left behind)
import torch, vllm, ray
print(f"vllm {vllm.__version__} and ray {ray.__version__} installed; torch {torch.__version__}, "
      f"transformers {md.version('transformers')} imports")
PY
