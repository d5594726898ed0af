"""Pretrains a tiny Countdown base model on synthetic traces and measures what GRPO could gain from it.

One setting per call: build problems, pretrain on `r1jax.data.synthetic` traces with `r1jax.sft`
(timed, compile included), then sample the held-out test problems greedily and at temperature 1
and measure:

* format: the completion is `...</think>\\n<answer>EQ</answer>` with EQ using each number once;
* arith: share of attempts in the think block whose every `=`-separated part has the same value;
* attempts: mean number of attempts per completion;
* acc: base accuracy, `rewards.countdown.score == 1`;
* oracle: share of completions where some attempt uses each number once, is computed correctly,
  and hits the target (the accuracy of a policy that always answered with the right attempt);
* pass@8 (temperature 1 only): share of problems solved by at least one of 8 samples, the signal a
  GRPO group of 8 sees; the other temperature-1 columns average over those 8 samples.

Each call appends a JSON row to `--results` and prints the table of every row there.

    python tools/study_tiny_base.py         # configs/countdown_tiny.py's base (~9 min on a 2-core CPU)
    python tools/study_tiny_base.py --hidden 64 --min-count 3 --max-count 3 --max-number 20 --max-target 50 \
        --style chain --max-new-tokens 128  # a 0.2M model on three numbers: its arithmetic fails
    python tools/study_tiny_base.py --table        # only print the table
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from collections.abc import Sequence

import jax
import numpy as np

from r1jax import model as model_lib
from r1jax import optim, sampler, sft
from r1jax.data import countdown, synthetic
from r1jax.data.char_tokenizer import vocab_size as char_vocab_size
from r1jax.data.char_tokenizer import write_char_tokenizer
from r1jax.data.prompts import compact_prompt
from r1jax.rewards.countdown import evaluate_equation, score, uses_each_number_once
from r1jax.tokenizer import Tokenizer, load_tokenizer

_GROUP = 8  # samples per problem at temperature 1, as in a GRPO group
_LAYOUT = re.compile(r"(?P<think>.*)</think>\n<answer>(?P<answer>.*)</answer>(<\|endoftext\|>)?", re.DOTALL)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=128, help="hidden size; heads of 32 dims, MLP 3x")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=8, help="packed rows per step")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--style", choices=synthetic.STYLES, default="inline")
    parser.add_argument("--min-count", type=int, default=2)
    parser.add_argument("--max-count", type=int, default=2)
    parser.add_argument("--max-number", type=int, default=99)
    parser.add_argument("--max-target", type=int, default=100)
    parser.add_argument("--max-attempts", type=int, default=4)
    parser.add_argument("--max-value", type=int, default=100, help="bound on every intermediate value of an attempt")
    parser.add_argument("--arithmetic-facts", type=int, default=100_000,
                        help="single-operation drills mixed into the corpus (needs --max-value)")
    parser.add_argument("--train-size", type=int, default=4096)
    parser.add_argument("--traces-per-example", type=int, default=4)
    parser.add_argument("--test-size", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default="/tmp/study_tiny_base.jsonl")
    parser.add_argument("--table", action="store_true", help="print the table of --results and exit")
    return parser.parse_args()


def attempt_is_correct(attempt: str) -> bool:
    """Every '='-separated part evaluates, and all to the same value."""
    parts = attempt.split("=")
    values = [evaluate_equation(part) for part in parts]
    return len(parts) >= 2 and None not in values and len(set(values)) == 1


def measure(completions: Sequence[str], problems: Sequence[countdown.CountdownExample]) -> dict[str, float]:
    formatted = correct_attempts = attempts = accurate = oracle = 0
    for text, problem in zip(completions, problems):
        nums, target = problem["nums"], problem["target"]
        accurate += score(text, nums, target) == 1.0
        layout = _LAYOUT.fullmatch(text)
        formatted += bool(layout) and uses_each_number_once(layout["answer"], nums) and \
            evaluate_equation(layout["answer"]) is not None
        think = text.split("</think>")[0]
        hit = False
        for attempt in filter(None, (a.strip() for a in think.split(synthetic.ATTEMPT_SEPARATOR.strip()))):
            attempts += 1
            correct = attempt_is_correct(attempt)
            correct_attempts += correct
            expression = attempt.split("=")[0]
            hit |= correct and uses_each_number_once(expression, nums) and evaluate_equation(expression) == target
        oracle += hit
    n = len(completions)
    return dict(format=formatted / n, arith=correct_attempts / max(attempts, 1), attempts=attempts / n,
                acc=accurate / n, oracle=oracle / n)


def sample_texts(config: model_lib.ModelConfig, params: model_lib.Params, tokenizer: Tokenizer,
                 prompts: Sequence[str], *, temperature: float, num_samples: int, max_new_tokens: int,
                 seed: int) -> list[str]:
    """Completion texts; row `i * num_samples + j` is sample j of prompt i."""
    result = sampler.generate(config, params, tokenizer.encode_batch(prompts), max_new_tokens=max_new_tokens,
                              num_samples=num_samples, temperature=temperature, eos_ids=tokenizer.eos_ids,
                              stop_strings=("</answer>",), tokenizer=tokenizer, seed=seed, pad_id=tokenizer.pad_id)
    return [tokenizer.decode(row[:length]) for row, length in zip(result.tokens, result.lengths)]


def print_table(path: str) -> None:
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    header = (f"{'model':>9} {'params':>7} {'steps':>5} {'bs':>3} {'lr':>7} {'style':>6} {'nums':>5} {'maxN':>4} "
              f"{'ep':>4} {'loss':>6} {'train_s':>7} {'load':>4} | {'greedy: fmt arith att  acc oracle':>40} | "
              f"{'T=1 x8: fmt arith att  acc oracle pass@8':>40}")
    print(header)
    for r in rows:
        cells = [f"{r['hidden']}x{r['layers']}", f"{r['params'] / 1e6:.2f}M", r["steps"], r["batch_size"],
                 f"{r['lr']:.0e}", r["style"], f"{r['min_count']}-{r['max_count']}", r["max_number"],
                 f"{r['epochs']:.1f}", f"{r['final_loss']:.3f}", f"{r['train_seconds']:.0f}", f"{r['load']:.1f}"]
        line = (f"{cells[0]:>9} {cells[1]:>7} {cells[2]:>5} {cells[3]:>3} {cells[4]:>7} {cells[5]:>6} {cells[6]:>5} "
                f"{cells[7]:>4} {cells[8]:>4} {cells[9]:>6} {cells[10]:>7} {cells[11]:>4}")
        for mode in ("greedy", "sampled"):
            m = r[mode]
            line += (f" | {m['format']:5.2f} {m['arith']:5.2f} {m['attempts']:4.1f} {m['acc']:5.2f} "
                     f"{m['oracle']:6.2f} {m.get('pass@8', float('nan')):6.2f}")
        print(line)


def main() -> None:
    args = parse_args()
    if args.table:
        print_table(args.results)
        return
    data_config = countdown.CountdownConfig(min_count=args.min_count, max_count=args.max_count,
                                            max_number=args.max_number, max_target=args.max_target,
                                            train_size=args.train_size, test_size=args.test_size, seed=args.seed)
    test, train = countdown.generate_splits(data_config)
    pairs = synthetic.countdown_corpus(train, traces_per_example=args.traces_per_example, seed=args.seed,
                                       max_attempts=args.max_attempts, style=args.style,
                                       max_value=args.max_value)
    if args.arithmetic_facts:
        pairs += synthetic.arithmetic_facts(args.arithmetic_facts, max_number=args.max_number,
                                            max_value=args.max_value, seed=args.seed)
    tokenizer = load_tokenizer(write_char_tokenizer(tempfile.mkdtemp(prefix="char_tokenizer_")))
    model_config = model_lib.get_model_config(
        "tiny", vocab_size=-(-char_vocab_size() // 8) * 8, hidden_size=args.hidden, intermediate_size=3 * args.hidden,
        num_layers=args.layers, num_heads=args.hidden // 32, num_kv_heads=max(1, args.hidden // 64), head_dim=32)
    params = model_lib.init_params(model_config, jax.random.key(args.seed))
    optimizer_config = optim.optimizer_config(learning_rate=args.lr, schedule="cosine", warmup_steps=20,
                                              weight_decay=0.01)

    start = time.perf_counter()
    load = os.getloadavg()[0]
    result = sft.train(model_config, params, pairs, tokenizer, steps=args.steps, batch_size=args.batch_size,
                       seq_len=args.seq_len, optimizer_config=optimizer_config, seed=args.seed,
                       log_every=max(args.steps // 5, 1))
    train_seconds = time.perf_counter() - start
    load = max(load, os.getloadavg()[0])
    total_tokens = sum(len(p) + len(c) for p, c in sft.encode_pairs(pairs, tokenizer))

    prompts = [compact_prompt(p["nums"], p["target"]) for p in test]
    row = dict(vars(args), params=model_config.num_params(), train_seconds=train_seconds, load=load,
               final_loss=float(np.mean(result.losses[-10:])),
               epochs=args.steps * args.batch_size * args.seq_len / total_tokens)
    for mode, temperature, num_samples in (("greedy", 0.0, 1), ("sampled", 1.0, _GROUP)):
        eval_start = time.perf_counter()
        texts = sample_texts(model_config, result.params, tokenizer, prompts, temperature=temperature,
                             num_samples=num_samples, max_new_tokens=args.max_new_tokens, seed=args.seed)
        problems = [problem for problem in test for _ in range(num_samples)]
        row[mode] = measure(texts, problems)
        if num_samples > 1:
            solved = np.reshape([score(t, p["nums"], p["target"]) == 1.0 for t, p in zip(texts, problems)],
                                (len(test), num_samples))
            row[mode][f"pass@{num_samples}"] = float(solved.any(axis=1).mean())
        print(f"{mode} ({time.perf_counter() - eval_start:.0f} s): {row[mode]}\n  e.g. {prompts[0]!r} -> "
              f"{texts[0]!r}\n  e.g. {prompts[1]!r} -> {texts[num_samples]!r}", flush=True)
    del row["table"], row["results"]
    with open(args.results, "a") as f:
        f.write(json.dumps(row) + "\n")
    print_table(args.results)


if __name__ == "__main__":
    main()
