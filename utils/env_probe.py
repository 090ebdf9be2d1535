"""Where the libraries a run needs are imported from, as JSON; run inside any launcher to check it.

accelerate launch --cpu --num_processes 1 -m prosetting.utils.env_probe
"""

from __future__ import annotations

import importlib
import json
import sys


def probe(names: tuple[str, ...] = ("datasets", "trl", "transformers", "torch", "accelerate")) -> dict:
    out = {"python": sys.executable}
    for name in names:
        try:
            mod = importlib.import_module(name)
            out[name] = {
                "file": getattr(mod, "__file__", None),
                "version": getattr(mod, "__version__", None),
                "is_hf_datasets": name != "datasets" or hasattr(mod, "load_dataset"),
            }
        except Exception as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


if __name__ == "__main__":
    print("PROBE " + json.dumps(probe()), flush=True)
