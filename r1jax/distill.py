"""`mode: distill`: rejection sampling. A teacher samples k completions per prompt of a task, a verifier
keeps the correct ones, and what is kept is SFT data for a student (R1's rejection-sampling stage,
R1-Distill, Sky-T1).

    python -m r1jax.main --config configs/distill_countdown_tiny.py
    python -m r1jax.main --config configs/distill_countdown_tiny.py --config.traces_file=outputs.jsonl

The teacher is `model` (any checkpoint r1jax loads). The prompts are the first `num_prompts` problems of
the task's `split` (`r1jax.data.tasks`), rendered with `data.template`; `sampling` sets the sampler.
Every sample is scored with `rewards` (the registry: countdown, math, format, ...). It is correct when
its `accuracy_reward` score is at least `accuracy_threshold` and it finished (EOS or a stop string, not
cut off by `max_new_tokens`); it is accepted when, besides, every reward named in `min_scores` reaches its
minimum there (R1 also rejects reasoning in mixed languages: `min_scores={'language_consistency': 0.95}`).
Per prompt, `keep` picks among the accepted samples: 'all', 'first' (the lowest sample index) or
'shortest' (the fewest tokens, then the lowest index).

`keep: 'journey'` writes journey-learning data instead (O1 Replication Journey): per solved prompt, a
number of wrong samples drawn uniformly from `journey.min_wrong..max_wrong` (at most those there are:
finished, judged below the threshold, distinct texts, picked at random in sample order), then the first
correct sample, joined by `r1jax.data.journey.stitch` with `journey.transition`. The stitched text is
scored again and kept only if the verifier still calls it correct. A prompt without wrong samples
gets its correct sample alone, as does one drawn zero: mixing in plain solutions keeps a student from
learning to reject every first attempt.

With `traces_file`, another model's outputs go through the same filter instead of sampling: JSON lines
with `prompt_id` (an index into the split's prompts) and `completion`; `prompt`, `sample` and `teacher`
are kept when given (default: the task's prompt, the record's rank among its prompt's, the file).

Output: `<workdir>/<output_file>`, one JSON line per kept sample, which `mode: sft` reads as it is:
`prompt` and `completion`, and the provenance: `teacher`, `split`, `prompt_id`, `sample`, `reward` (the
accuracy score), `rewards` (every score), `num_tokens`, `example` (the problem, e.g. nums and target);
a journey adds `detour_samples`, the wrong samples it went through.
`distill_summary.json` beside it counts samples, correct samples and solved prompts. The output file
appears complete or not at all.

Sampled completions, right or wrong, go to `<workdir>/distill_samples.jsonl` a batch of prompts at a time
(`records.ResumableWriter`): a run stopped by SIGTERM (exit code 75) or killed continues from its last
whole batch, with the samples an uninterrupted run makes; a rerun that changes only the verifier
(`rewards`, `accuracy_reward`, `accuracy_threshold`, `min_scores`, `keep`) filters the same samples again without
sampling. A change to what is sampled (model, data, sampling, seed, batch) is refused in that workdir.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm

from r1jax import checkpoint, runtime, sampler, sharding
from r1jax.config import (ConfigError, validate_generation, validate_output_file, validate_rewards,
                          validate_task_data, validate_tokenizer)
from r1jax.data import journey, records, tasks
from r1jax.rewards import RewardSet
from r1jax.tokenizer import Tokenizer

KEEP_POLICIES = ("all", "first", "shortest", "journey")
SPLITS = ("train", "test")
SUMMARY_FILE = "distill_summary.json"
SAMPLES_FILE = "distill_samples.jsonl"
# What the samples depend on: a change in them is refused when continuing a run's samples.
SAMPLING_KEYS = ("model", "tokenizer", "data", "split", "num_prompts", "prompt_batch_size", "sampling", "seed")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One completion of one prompt, before verification."""

    prompt_id: int
    sample: int
    prompt: str
    completion: str
    num_tokens: int
    finished: bool
    teacher: str


def validate_config(config: ml_collections.ConfigDict) -> None:
    """The distill mode's keys; raises ConfigError naming the first bad one."""
    validate_tokenizer(config)
    validate_task_data(config)
    validate_rewards(config)
    s = config.sampling
    checks = [
        ("split", config.split in SPLITS, f"{config.split!r} is not one of {', '.join(SPLITS)}"),
        ("num_prompts", config.num_prompts >= 0, f"{config.num_prompts} must be >= 0 (0: the whole split)"),
        ("prompt_batch_size", config.prompt_batch_size > 0, f"{config.prompt_batch_size} must be positive"),
        ("keep", config.keep in KEEP_POLICIES, f"{config.keep!r} is not one of {', '.join(KEEP_POLICIES)}"),
        ("traces_file", not config.traces_file or os.path.isfile(config.traces_file),
         f"{config.traces_file!r} is not a file; point it at JSON lines with 'prompt_id' and 'completion', "
         "or set it to '' to sample from the teacher"),
        ("sampling.num_samples", s.num_samples > 0, f"{s.num_samples} must be positive"),
        ("journey.min_wrong", 0 <= config.journey.min_wrong <= config.journey.max_wrong,
         f"need 0 <= min_wrong <= max_wrong, got {config.journey.min_wrong}, {config.journey.max_wrong}"),
        ("journey.transition", isinstance(config.journey.transition, str),
         f"{config.journey.transition!r} must be a string"),
    ]
    for key, ok, message in checks:
        if not ok:
            raise ConfigError(f"config.{key}: {message}")
    validate_output_file(config)
    validate_generation(s, "sampling.")


def _meets_min_scores(scores: Mapping[str, np.ndarray], min_scores: Mapping[str, float]) -> np.ndarray:
    """Per sample, whether every reward of `min_scores` reaches its minimum (NaN, unjudgeable, does not)."""
    meets = np.ones(len(next(iter(scores.values()))), bool)
    for key, minimum in min_scores.items():
        meets &= scores[key] >= minimum
    return meets


def _by_prompt(candidates: Sequence[Candidate], chosen: Sequence[bool]) -> dict[int, list[int]]:
    """Indices of the chosen candidates per prompt id, in sample order."""
    by_prompt: dict[int, list[int]] = collections.defaultdict(list)
    for index, (candidate, ok) in enumerate(zip(candidates, chosen, strict=True)):
        if ok:
            by_prompt[candidate.prompt_id].append(index)
    return {prompt_id: sorted(group, key=lambda i: candidates[i].sample) for prompt_id, group in by_prompt.items()}


def select(candidates: Sequence[Candidate], correct: Sequence[bool], keep: str) -> list[int]:
    """Indices of the kept candidates, by prompt id then sample index (module docstring); for 'journey',
    the correct sample each journey ends in."""
    if keep not in KEEP_POLICIES:
        raise ValueError(f"keep={keep!r} is not one of {KEEP_POLICIES}")
    by_prompt = _by_prompt(candidates, correct)
    kept = []
    for prompt_id in sorted(by_prompt):
        group = by_prompt[prompt_id]
        if keep == "all":
            kept += group
        elif keep in ("first", "journey"):
            kept.append(group[0])
        else:
            kept.append(min(group, key=lambda i: (candidates[i].num_tokens, candidates[i].sample)))
    return kept


def detours(candidates: Sequence[Candidate], wrong: Sequence[bool], ends: Sequence[int], *, min_wrong: int,
            max_wrong: int, seed: int) -> list[list[int]]:
    """For the journey ending in each candidate of `ends`, the wrong candidates it goes through (module
    docstring): distinct texts of its prompt, in sample order, their number drawn per prompt from `seed`."""
    by_prompt = _by_prompt(candidates, wrong)
    chosen = []
    for end in ends:
        prompt_id = candidates[end].prompt_id
        first_of_text: dict[str, int] = {}
        for i in by_prompt.get(prompt_id, []):
            first_of_text.setdefault(candidates[i].completion, i)
        distinct = list(first_of_text.values())
        rng = random.Random(f"journey-{seed}-{prompt_id}")
        count = min(rng.randint(min_wrong, max_wrong), len(distinct))
        chosen.append(sorted(rng.sample(distinct, count), key=lambda i: candidates[i].sample))
    return chosen


def read_traces(path: str, examples: Sequence[Mapping[str, Any]], render_prompt: Callable[[Mapping[str, Any]], str],
                tokenizer: Tokenizer) -> list[Candidate]:
    """Candidates from another model's outputs (module docstring); errors name the file and line."""
    candidates = []
    seen: collections.Counter[int] = collections.Counter()
    for where, record in records.read_records(path):
        prompt_id = record.get("prompt_id")
        if not isinstance(prompt_id, int) or isinstance(prompt_id, bool) or not 0 <= prompt_id < len(examples):
            raise ValueError(f"{where}: 'prompt_id' must be an index into the {len(examples)} prompts of the "
                             f"split, got {prompt_id!r}")
        completion = record.get("completion")
        prompt = record.get("prompt", render_prompt(examples[prompt_id]))
        sample = record.get("sample", seen[prompt_id])
        for name, value, kind in (("completion", completion, str), ("prompt", prompt, str), ("sample", sample, int)):
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"{where}: {name!r} must be a {kind.__name__}, got {value!r}")
        seen[prompt_id] += 1
        candidates.append(Candidate(prompt_id, sample, prompt, completion, len(tokenizer.encode(completion)),
                                    finished=True, teacher=str(record.get("teacher", path))))
    return candidates


def _sample(config: ml_collections.ConfigDict, tokenizer: Tokenizer, task: tasks.Task,
            examples: Sequence[Mapping[str, Any]], teacher: str, workdir: str) -> list[Candidate]:
    """`sampling.num_samples` completions of every example's prompt from the teacher, continuing the
    batches already in `<workdir>/SAMPLES_FILE` (module docstring)."""
    mesh, rules = runtime.mesh_and_rules(config)
    model_config = runtime.model_config(config)
    if tokenizer.vocab_size > model_config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                         f"{model_config.vocab_size}; set config.model.vocab_size or use the model's tokenizer")
    s, k = config.sampling, config.sampling.num_samples
    eos_ids = tuple(tokenizer.eos_ids)
    request = dict(max_new_tokens=s.max_new_tokens, num_samples=k, temperature=s.temperature, top_k=s.top_k,
                   top_p=s.top_p, min_p=s.min_p, eos_ids=eos_ids, stop_strings=tuple(s.stop_strings),
                   tokenizer=tokenizer, max_prompt_len=s.max_prompt_len or None,
                   pad_id=tokenizer.pad_id if tokenizer.pad_id is not None else 0)
    key = jax.random.key(config.seed)
    settings = json.loads(config.to_json_best_effort())
    signature = dict(teacher=teacher, **{name: settings[name] for name in SAMPLING_KEYS})
    samples_path, batch_size = os.path.join(workdir, SAMPLES_FILE), config.prompt_batch_size
    with records.ResumableWriter(samples_path, signature) as out, sharding.use_mesh(mesh, rules), \
            checkpoint.PreemptionGuard() as preemption, \
            tqdm.tqdm(total=len(examples), unit="prompt", desc="distill") as progress:
        progress.update(min(out.batches_done * batch_size, len(examples)))
        params = None
        for first in checkpoint.batch_starts(len(examples), batch_size, first_batch=out.batches_done,
                                             preemption=preemption, what="distill", unit="prompts",
                                             saved_in=samples_path):
            if params is None:
                params = sampler.per_layer_params(runtime.load_or_init_params(config, model_config, mesh, rules))
            prompts = [task.render_prompt(e) for e in examples[first:first + batch_size]]
            result = sampler.generate(model_config, params, [task.encode_prompt(p) for p in prompts],
                                      seed=jax.random.fold_in(key, first), **request)
            batch = []
            for row, (tokens, length, finished) in enumerate(zip(result.tokens, result.lengths, result.finished)):
                text = tokenizer.decode_completion(tokens[:length], eos_ids)
                batch.append(dataclasses.asdict(Candidate(first + row // k, row % k, prompts[row // k], text,
                                                          int(length), bool(finished), teacher)))
            out.write_batch(batch)
            progress.update(len(prompts))
    if not out.batches_done:  # no prompts
        return []
    return [Candidate(**record) for _, record in records.read_records(samples_path, what="samples")]


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Writes the kept samples to `<workdir>/<output_file>` and returns the summary (with `output_file`)."""
    validate_config(config)
    start = time.perf_counter()
    tokenizer = runtime.tokenizer(config, workdir)
    task = tasks.load_task(config.data, tokenizer, workdir)
    source = task.train if config.split == "train" else task.test
    count = min(config.num_prompts or len(source), len(source))
    examples = [source[i] for i in range(count)]
    if config.traces_file:
        teacher = config.traces_file
        candidates = read_traces(config.traces_file, examples, task.render_prompt, tokenizer)
    else:
        teacher = config.model.checkpoint or f"{config.model.name} (random init, seed {config.seed})"
        candidates = _sample(config, tokenizer, task, examples, teacher, workdir)

    with RewardSet(list(config.rewards), num_workers=config.reward_workers) as rewards:
        def score(texts: Sequence[str], prompt_ids: Sequence[int], lengths: Sequence[int]) -> dict[str, np.ndarray]:
            return rewards.score_batch(texts, [examples[i] for i in prompt_ids], lengths=lengths).as_arrays()[0]

        scores = score([c.completion for c in candidates], [c.prompt_id for c in candidates],
                       [c.num_tokens for c in candidates])
        accuracy = scores[config.accuracy_reward]
        finished = np.array([c.finished for c in candidates], bool)
        correct = (accuracy >= config.accuracy_threshold) & finished  # NaN (unjudgeable) compares False
        accepted = correct & _meets_min_scores(scores, config.min_scores)
        kept = select(candidates, accepted, config.keep)
        kept_records = [dict(prompt=candidates[i].prompt, completion=candidates[i].completion,
                             num_tokens=candidates[i].num_tokens) for i in kept]
        kept_scores = {name: values[kept] for name, values in scores.items()}
        if config.keep == "journey":
            wrong = (accuracy < config.accuracy_threshold) & finished
            j = config.journey
            paths = detours(candidates, wrong, kept, min_wrong=j.min_wrong, max_wrong=j.max_wrong, seed=config.seed)
            for index, record, path in zip(kept, kept_records, paths, strict=True):
                record.update(completion=journey.stitch([candidates[i].completion for i in path],
                                                        candidates[index].completion, transition=j.transition),
                              detour_samples=[candidates[i].sample for i in path])
                record["num_tokens"] = len(tokenizer.encode(record["completion"]))
            kept_scores = score([r["completion"] for r in kept_records], [candidates[i].prompt_id for i in kept],
                                [r["num_tokens"] for r in kept_records])
    still_correct = ((kept_scores[config.accuracy_reward] >= config.accuracy_threshold)
                     & _meets_min_scores(kept_scores, config.min_scores))

    def record(position: int) -> dict[str, Any]:
        c = candidates[kept[position]]
        return dict(kept_records[position], teacher=c.teacher, split=config.split, prompt_id=c.prompt_id,
                    sample=c.sample, reward=float(kept_scores[config.accuracy_reward][position]),
                    rewards={k: None if np.isnan(v[position]) else float(v[position]) for k, v in kept_scores.items()},
                    example=dict(examples[c.prompt_id]))

    output_path = os.path.join(workdir, config.output_file)
    written = [record(p) for p in np.flatnonzero(still_correct)]
    records.write_records(output_path, written)
    solved = {candidates[i].prompt_id for i in np.flatnonzero(correct)}
    summary = dict(teacher=teacher, split=config.split, prompts=count, samples=len(candidates),
                   correct_samples=int(correct.sum()), correct_share=float(correct.mean()) if len(correct) else 0.0,
                   correct_below_min_scores=int((correct & ~accepted).sum()),
                   unfinished_samples=int((~finished).sum()), solved_prompts=len(solved), kept=len(written),
                   keep=config.keep, seconds=time.perf_counter() - start)
    if config.keep == "journey":
        summary.update(journeys_with_detours=sum(bool(r["detour_samples"]) for r in written),
                       journeys_failing_verification=int((~still_correct).sum()))
    with open(os.path.join(workdir, SUMMARY_FILE), "w") as f:
        json.dump(summary, f, indent=2)
    table = [("teacher", teacher),
             ("prompts solved", f"{len(solved)} of {count} ({config.split} split)"),
             ("correct samples", f"{summary['correct_samples']} of {len(candidates)} "
                                 f"({summary['correct_share']:.3f}; {summary['unfinished_samples']} cut off)"),
             (f"kept ({config.keep})", f"{len(written)} -> {output_path}"),
             ("wall time", f"{summary['seconds']:.0f} s")]
    width = max(len(name) for name, _ in table)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in table))
    return dict(summary, output_file=output_path)
