"""The four ways to a reasoning model, side by side on the tiny Countdown setup (CPU).

    python -m r1jax.main --config configs/countdown_tiny.py          # first: the pretrained base model
    python tools/compare_recipes.py [--base workdir/countdown_tiny/base] [--workdir workdir/recipes]
    python tools/compare_recipes.py --quick                           # a fifth of the steps, for a first look

Every recipe starts from the same pretrained base and ends with the same evaluation on the 256 held-out
problems (greedy accuracy; R1's mean pass@1 and maj@8 over 8 samples at temperature 0.6, top-p 0.95):

    base       the base model as it is
    r1_zero    GRPO from the base (configs/countdown_tiny.py's RL stage)
    distill    the r1_zero policy samples the training problems, the verifier keeps one correct trace per
               problem, the base is SFT'd on them (R1-Distill)
    journey    SFT of the base on journeys: wrong attempts, the check that catches each, the correct path
    shortcut   SFT of the base on the correct path only, the same problems and steps
    r1         configs/r1_pipeline_tiny.py: cold-start SFT, RL, rejection sampling, SFT, RL

Each recipe is a pipeline (`r1jax.pipeline`) in <workdir>/<recipe>: rerunning the command skips what is
done. Wall and CPU time (this process, all threads: fairer on a shared machine) are the recipe's own
stages; distill's exclude its teacher (r1_zero). The table goes to
stdout and <workdir>/recipes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from r1jax import pipeline  # noqa: E402
from r1jax.config import load_config_file  # noqa: E402

EVAL = {"methods": ("greedy", "sampling"), "sampling.num_samples": 8}
RL_FROM = {"pretrain.steps": 0, "model.vocab_size": 0, "tokenizer": ""}


def recipes(quick: bool) -> dict[str, list[dict]]:
    """Recipe name -> its stages (the last one evaluates); `quick` divides every step count by 5."""
    def steps(n: int) -> int:
        return max(n // 5, 2) if quick else n

    def evaluation(model: str) -> dict:
        return dict(name="eval", config="configs/eval_countdown.py", overrides={**EVAL, "model.checkpoint": model})

    def sft(name: str, config: str, model: str, n: int, **overrides) -> dict:
        return dict(name=name, config=config, overrides={"model.checkpoint": model, "steps": steps(n), **overrides})

    r1 = load_config_file(os.path.join(REPO, "configs", "r1_pipeline_tiny.py")).stages
    for stage in r1:
        if "steps" in stage["overrides"]:
            stage["overrides"]["steps"] = steps(stage["overrides"]["steps"])
    return {
        "base": [evaluation("{base}")],
        "r1_zero": [dict(name="rl", config="configs/countdown_tiny.py",
                         overrides={**RL_FROM, "model.checkpoint": "{base}", "steps": steps(150)}),
                    evaluation("{rl}/hf_export")],
        "distill": [dict(name="rejection", config="configs/distill_countdown_tiny.py",
                         overrides={"model.checkpoint": "{teacher}"}),
                    sft("sft", "configs/sft_countdown_tiny.py", "{base}", 300,
                        **{"data.train_file": "{rejection}/distill.jsonl"}),
                    evaluation("{sft}/hf_export")],
        "journey": [sft("sft", "configs/sft_journey_tiny.py:journey", "{base}", 500), evaluation("{sft}/hf_export")],
        "shortcut": [sft("sft", "configs/sft_journey_tiny.py:shortcut", "{base}", 500), evaluation("{sft}/hf_export")],
        "r1": [*r1, evaluation("{rl_again}/hf_export")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="workdir/countdown_tiny/base", help="the pretrained base (HF directory)")
    parser.add_argument("--workdir", default="workdir/recipes")
    parser.add_argument("--quick", action="store_true", help="a fifth of every recipe's steps")
    parser.add_argument("--only", nargs="*", help="run these recipes only (distill needs r1_zero's policy)")
    args = parser.parse_args()
    args.base, args.workdir = os.path.abspath(args.base), os.path.abspath(args.workdir)
    os.chdir(REPO)  # the stages name their configs relative to the repository
    if not os.path.isfile(os.path.join(args.base, "config.json")):
        sys.exit(f"compare_recipes: {args.base} is not a Hugging Face model directory; make it with "
                 "`python -m r1jax.main --config configs/countdown_tiny.py` or pass --base")
    teacher = os.path.join(args.workdir, "r1_zero", "rl", "hf_export")
    results = []
    for name, stages in recipes(args.quick).items():
        if args.only and name not in args.only:
            continue
        config = pipeline.pipeline_config()
        config.vars.update(base=args.base, teacher=teacher)
        config.stages = stages
        records = pipeline.run(config, os.path.join(args.workdir, name))
        with open(os.path.join(records[-1]["workdir"], "report.json")) as f:
            methods = json.load(f)["methods"]
        results.append(dict(
            recipe=name, greedy=methods["greedy"]["rows"][0]["accuracy"],
            mean_pass_at_1=methods["mean_pass@1"]["rows"][0]["accuracy"],
            maj_at_8=methods["maj@k"]["rows"][-1]["accuracy"],
            seconds=sum(r["seconds"] for r in records[:-1]),
            cpu_seconds=sum(r.get("cpu_seconds", float("nan")) for r in records[:-1]),
            stages=" -> ".join(f"{r['name']} ({r['mode']})" for r in records[:-1]) or "-"))
    header = f"{'recipe':<10} {'greedy':>7} {'pass@1':>7} {'maj@8':>7} {'wall s':>7} {'CPU s':>7}  stages"
    lines = [header] + [f"{r['recipe']:<10} {r['greedy']:7.3f} {r['mean_pass_at_1']:7.3f} {r['maj_at_8']:7.3f} "
                        f"{r['seconds']:7.0f} {r['cpu_seconds']:7.0f}  {r['stages']}" for r in results]
    print("\n".join(lines))
    with open(os.path.join(args.workdir, "recipes.json"), "w") as f:
        json.dump(dict(base=args.base, quick=args.quick, results=results), f, indent=2)


if __name__ == "__main__":
    main()
