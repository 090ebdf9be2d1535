"""Control for the embedded default: the same training budget spent on plain SFT instead of the loop.

    python benchmarks/embedded_sft_control.py --workspace embedded_learning/seed_0

Reads a finished embedded run's workspace: its warm-started solver (`checkpoints/base_solver`), and per
trained round the number of optimizer steps, batch size, learning rate and warm-up it used. Then, from
the same warm start, trains round after round with TRL's `SFTTrainer` on the same number of steps with the
same hyperparameters, but on problems drawn uniformly from the warm start's levels with their reference
solutions (what more warm start would have seen), and measures the same held-out greedy accuracy. The
loop's rounds choose their data by zone (its own correct attempts on learning-zone questions, and the
Teacher's reference solution where every attempt failed); the control does not. Printed and saved as
`<workspace>/results/sft_control.json`.
torch, TRL and ProSetting's modules are imported after the arguments are parsed, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workspace", required=True)
    a = p.parse_args()

    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from prosetting.collectors.backends import TransformersBackend
    from prosetting.core.io import read_jsonl
    from prosetting.core.state_manager import Paths
    from prosetting.processors.evaluator import evaluate
    from prosetting.trainers.warm_start import sft_rows

    paths = Paths(Path(a.workspace))
    cfg = json.loads(paths.config.read_text())
    summary = json.loads(paths.summary.read_text())
    evaluations = json.loads(paths.evaluations.read_text())
    base = paths.base_model
    warm = json.loads((base / "warm_start.json").read_text())
    heldout = read_jsonl(paths.heldout)
    exclude = {q["question"] for q in heldout}

    def held_out(model_dir: Path) -> dict:
        backend = TransformersBackend(str(model_dir))
        r = evaluate(backend, heldout, k=0, max_new_tokens=cfg["MAX_NEW_TOKENS"])
        backend.close()
        return r

    rows = []
    model_dir = base
    scratch = Path(tempfile.mkdtemp(prefix="sft_control."))
    try:
        for entry in summary["rounds"]:
            r = entry["round"]
            result = json.loads(paths.train_result(r).read_text())
            if not result.get("trained"):
                continue
            steps = int(result["steps"])
            data = sft_rows(steps * cfg["TRL_BATCH_SIZE"], tuple(warm["levels"]), cfg["SEED"] + 1000 + r, exclude)
            tok = AutoTokenizer.from_pretrained(model_dir)
            model = AutoModelForCausalLM.from_pretrained(model_dir)
            args = SFTConfig(
                output_dir=str(scratch / "run"),
                max_steps=steps,
                per_device_train_batch_size=cfg["TRL_BATCH_SIZE"],
                learning_rate=cfg["TRL_LEARNING_RATE"],
                warmup_steps=cfg["TRL_WARMUP_RATIO"],
                lr_scheduler_type="linear",
                max_length=128,
                bf16=False,
                report_to="none",
                save_strategy="no",
                seed=cfg["SEED"] + r,
                disable_tqdm=True,
                dataloader_pin_memory=False,
            )
            trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(data), processing_class=tok)
            trainer.train()
            out = scratch / f"r{r}"
            trainer.model.save_pretrained(out)
            tok.save_pretrained(out)
            shutil.rmtree(scratch / "run", ignore_errors=True)
            model_dir = out
            ev = held_out(out)
            acc = ev["greedy"]
            rows.append(
                {
                    "round": r,
                    "steps": steps,
                    "control_greedy": acc,
                    "control_by_level": {k: v["greedy"] for k, v in ev["by_level"].items()},
                    "loop_greedy": evaluations[f"round_{r}"]["greedy"],
                }
            )
            print(
                f"round {r}: {steps} steps  loop {100 * rows[-1]['loop_greedy']:5.1f}%  SFT control {100 * acc:5.1f}%",
                flush=True,
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = {"workspace": str(paths.root), "warm_start": evaluations["baseline"]["greedy"], "rounds": rows}
    (paths.evaluations.parent / "sft_control.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"warm start {100 * result['warm_start']:.1f}%; after the last round: loop "
        f"{100 * rows[-1]['loop_greedy']:.1f}%, SFT control {100 * rows[-1]['control_greedy']:.1f}%"
    )


if __name__ == "__main__":
    main()
