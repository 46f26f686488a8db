"""CPU training steps with and without keeping freed memory in the process (rprloc_core/allocator.py).

    python benchmarks/training_allocator.py --profile demo [--model coarse|fine] [--steps 12] [--volumes 40]

Trains the profile's coarse (or fine) Pnet for a few steps on its first training patients, twice, each in a
fresh process: once as the trainers run (freed memory kept), once with RPRLOC_KEEP_FREED_MEMORY=0
(glibc's defaults). Prints seconds per step, the ratio and the page faults of each, and checks
that both runs computed the same losses. Writes results/<profile>/benchmarks/training_allocator.json
(the coarse model) or training_allocator_fine.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile

SHOWN = {"1": "freed memory kept (default)", "0": "glibc defaults"}


def child(profile: str, model: str, steps: int, volumes: int) -> dict:
    import torch

    from rprloc_core.data import dataset
    from rprloc_core.rprloc.training import read_training_state, train_pnet
    from rprloc_core.settings import load_settings

    settings = load_settings(profile)
    config = dataclasses.replace(getattr(settings.rprloc, model), steps=steps, val_every=10 ** 9, val_pairs=8,
                                 time_limit_s=None, init_from=None, teacher=None)
    train = dataset.unlabelled_volumes(settings, "train", progress=False, limit=volumes)
    val = dataset.unlabelled_volumes(settings, "validation", progress=False, limit=2)
    with tempfile.TemporaryDirectory() as out:
        summary = train_pnet(config, train, val, out, progress=False)
        losses = read_training_state(f"{out}/last.pt")["progress"]["train_losses"]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"s_per_step": summary["train_time_s"] / steps, "losses": losses, "threads": torch.get_num_threads(),
            "minor_page_faults": usage.ru_minflt, "system_s": usage.ru_stime, "user_s": usage.ru_utime}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--model", choices=("coarse", "fine"), default="coarse")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--volumes", type=int, default=40, help="first N training patients")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.profile, args.model, args.steps, args.volumes)))
        return 0

    from rprloc_core.paths import results_dir
    from rprloc_core.reporting import cpu_model, write_json

    runs = {}
    for keep in ("1", "0"):
        out = subprocess.run([sys.executable, __file__, "--child", "--profile", args.profile, "--model", args.model,
                              "--steps", str(args.steps), "--volumes", str(args.volumes)], check=True,
                             capture_output=True, text=True, env={**os.environ, "RPRLOC_KEEP_FREED_MEMORY": keep})
        runs[keep] = json.loads(out.stdout.strip().splitlines()[-1])
        run = runs[keep]
        print(f"{SHOWN[keep]:28s} {run['s_per_step']:.2f} s per step, {run['minor_page_faults']:,} page faults, "
              f"{run['system_s']:.0f} s in the kernel")
    same = runs["1"]["losses"] == runs["0"]["losses"]
    ratio = runs["0"]["s_per_step"] / runs["1"]["s_per_step"]
    print(f"speed-up {ratio:.2f}x; losses of the {args.steps} steps {'equal' if same else 'DIFFER'}")
    figures = {"profile": args.profile, "model": f"{args.model} Pnet (the profile's config)", "steps": args.steps,
               "training_volumes": args.volumes, "threads": runs["1"]["threads"],
               "runs": {SHOWN[k]: {key: v for key, v in run.items() if key != "losses"} for k, run in runs.items()},
               "speedup": ratio, "same_losses": same, "cpu_model": cpu_model(), "cpus": os.cpu_count()}
    name = "training_allocator.json" if args.model == "coarse" else "training_allocator_fine.json"
    path = results_dir(args.profile) / "benchmarks" / name
    write_json(figures, path)
    print(f"wrote {path}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
