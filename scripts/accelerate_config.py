"""Write the accelerate config the training stage would use for a configuration, without looking at this machine's GPUs.

    python scripts/accelerate_config.py --out fsdp8.yaml --set TRL_NUM_PROCESSES=8 --set TRL_MIXED_PRECISION=bf16
    python scripts/accelerate_config.py --out ddp_cpu.yaml --cpu --set TRL_NUM_PROCESSES=2
    accelerate launch --config_file fsdp8.yaml -m prosetting.trainers.dpo_entry --spec training_runs/r3/spec.json

The GPUs are assumed to be PHYSICAL_DPO_GPU when set, else one per process on each machine (0..n-1);
`--cpu` writes the CPU variant. The file is validated by loading it with accelerate's own config classes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prosetting.core import devices
from prosetting.core.config import ConfigError, load_config, parse_set_args
from prosetting.trainers import launch
from prosetting.trainers.specs import check_training_settings


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="YAML file to write.")
    p.add_argument("--env-file", default=".env", help="Configuration file (default .env, if present).")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Override one key (repeatable).")
    p.add_argument("--cpu", action="store_true", help="Write the config for a machine without GPUs.")
    args = p.parse_args(argv)
    try:
        cfg, _ = load_config(args.env_file, parse_set_args(args.set))
        check_training_settings(cfg)
        launch.check_launch_settings(cfg)
        if args.cpu:
            gpus = []
        elif cfg.PHYSICAL_DPO_GPU:
            gpus = devices.parse_gpu_list(cfg.PHYSICAL_DPO_GPU)
        else:
            gpus = list(range(max(1, cfg.TRL_NUM_PROCESSES // cfg.NUM_MACHINES)))
        path = launch.write_accelerate_config(cfg, gpus, Path(args.out))
    except (ConfigError, ValueError, launch.LaunchError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(
        f"wrote {path}: preset {launch.resolve_preset(cfg, gpus)}, {cfg.TRL_NUM_PROCESSES} process(es) on "
        f"{cfg.NUM_MACHINES} machine(s), {'CPU' if not gpus else 'GPUs ' + ','.join(map(str, gpus))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
