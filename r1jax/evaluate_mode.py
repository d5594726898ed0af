"""`mode: evaluate`: inference-time scaling of one model on one task: `<workdir>/report.json`, `scaling.png`, tables.

    python -m r1jax.main --config configs/eval_countdown.py --config.model.checkpoint=DIR

Tasks (`data.name`): 'countdown' (built locally as for GRPO, from `data.countdown`), the math benchmarks
'gsm8k', 'math500', 'aime2024' (`r1jax.data.benchmarks`, read from the file in `data.manual_dir`), and
'code': programming problems with their tests in `data.code.test_file` (`r1jax.data.tasks.read_code_jsonl`:
MBPP-style assert lists, stdin/stdout cases of APPS, CodeContests, LiveCodeBench). The first
`data.num_examples` test problems (0: all) are prompted with `data.template`; a completion is correct when the
task's accuracy reward ('countdown', 'math', or 'code': every test passes in the sandbox) pays
`r1jax.evaluate.CORRECT_SCORE`.

Methods (`methods`, any of):
* greedy: one greedy completion per problem.
* sampling: `sampling.num_samples` (n) samples per problem, drawn once (R1's temperature 0.6 and top-p 0.95 by
  default). From them, for N = 1, 2, 4, ..., n, averaged over N-subsets (`r1jax.evaluate`'s scaling curves):
  pass@N (unbiased); maj@N (cons@N: the majority-voted answer, `r1jax.evaluate.AnswerRule` of the task);
  best-of-N ranked by the verifier (`verifier`: reward entries as in GRPO configs, their weighted sum; with
  the accuracy reward itself, a rule-based oracle, best-of-N equals pass@N) and by mean token log-prob
  under the sampling distribution (no verifier); and R1's mean pass@1 over the n samples.
* beam_search: the top beam at each width of `beam_search.widths` (`r1jax.sampler.beam_search`: log-probs at
  temperature 1, `sum / length ** length_penalty`). Beams end at EOS only; their text is cut after the first
  stop string before scoring.
* budget_forcing: s1's (`r1jax.scaling.budget_forced_generate`) at each (min, max) thinking budget of
  `budget_forcing.budgets`, decoding at `budget_forcing.temperature` (0: greedy, so the greedy row is
  budget forcing off). A prompt that does not end with `think_open` gets it appended.

The greedy and sampling completions go to `<workdir>/samples/{greedy,sampling}.jsonl` a batch of problems at a
time (`records.ResumableWriter`): a run stopped by SIGTERM (exit code 75) or killed continues from the last
whole batch, and a rerun reads finished methods' samples instead of sampling again (beam search and budget
forcing run again whole). Other settings or problems are refused in that workdir.

Per method the report holds its settings and rows of accuracy, samples per problem and generated tokens per
problem: N x the mean sample length at a curve's point; width x the longest returned beam for beam search
(the rows the decode loop ran, for as long as it ran); thinking, close, answer opening and answer for
budget forcing.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds
import tqdm
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter

from r1jax import config as config_lib
from r1jax import checkpoint, distributed, evaluate, runtime, sampler, scaling, sharding
from r1jax.config import ConfigError, validate_countdown_data, validate_problem_files, validate_tokenizer
from r1jax.data import benchmarks, prompts, records, tasks
from r1jax.model import ModelConfig, Params
from r1jax.rewards.registry import RewardSet, RewardSpec, resolve
from r1jax.tokenizer import Tokenizer

METHODS = ("greedy", "sampling", "beam_search", "budget_forcing")
CURVES = ("pass@k", "maj@k", "best_of_n_verifier", "best_of_n_logprob")  # the sampling method's results per N


@dataclasses.dataclass(frozen=True)
class EvalTask:
    accuracy_reward: str  # a reward of r1jax.rewards.registry that pays CORRECT_SCORE for a right answer
    answers: evaluate.AnswerRule  # which answers vote together
    templates: tuple[str, ...]  # data.template choices


EVAL_TASKS = {
    "countdown": EvalTask("countdown", evaluate.COUNTDOWN_ANSWERS, prompts.TEMPLATES),
    **{name: EvalTask("math", evaluate.MATH_ANSWERS, prompts.MATH_TEMPLATES) for name in benchmarks.BENCHMARKS},
    "code": EvalTask("code", evaluate.CODE_ANSWERS, prompts.TASK_TEMPLATES["code"]),
}


def eval_config() -> ml_collections.ConfigDict:
    """Defaults of `mode: evaluate`; configs/eval_*.py override what they change."""
    config = config_lib.base_config()
    config.mode = "evaluate"
    config.tokenizer = ""  # '' reads model.checkpoint's
    config.data = ml_collections.ConfigDict(dict(
        name="countdown",  # a key of EVAL_TASKS
        template="compact",  # r1jax.data.prompts: countdown's TEMPLATES, the benchmarks' MATH_TEMPLATES
        num_examples=0,  # the first test problems; 0: all
        data_dir="",  # where TFDS data is built; default <workdir>/data
        manual_dir="",  # gsm8k/math500/aime2024: the folder with the benchmark's file (r1jax/data/benchmarks.py)
        countdown=config_lib.grpo_config().data.countdown.to_dict(),  # as GRPO's data.countdown
        # As GRPO's data.code, its test file.
        code=dict(test_file="", question_key="problem", tests_key="tests", starter_code_key="starter_code",
                  skip_unsupported=False),
    ))
    config.methods = METHODS
    config.max_new_tokens = 1024  # per completion (greedy, sampling, beam search)
    config.max_prompt_len = 0  # 0: the model's positions minus max_new_tokens
    config.stop_strings = ("</answer>",)
    config.prompt_batch_size = 16  # prompts per sampler call; each brings num_samples (or width) rows
    config.verifier = (dict(name="countdown", weight=1.0),)  # best-of-N's ranking, reward entries as in GRPO
    config.reward_workers = 0  # processes scoring in parallel (the code reward runs programs); 0: this one
    config.sampling = ml_collections.ConfigDict(dict(
        num_samples=64, temperature=evaluate.R1_EVAL_TEMPERATURE, top_p=evaluate.R1_EVAL_TOP_P, top_k=0,
        num_subsets=1000,  # maj@N: random N-subsets per point where there are more (exact below)
    ))
    config.beam_search = ml_collections.ConfigDict(dict(widths=(2, 4), length_penalty=1.0))
    config.budget_forcing = ml_collections.ConfigDict(dict(
        budgets=((0, 512), (512, 1024)),  # (min, max) thinking tokens, one row each
        max_answer_tokens=64,
        max_waits=-1,  # "Wait"s per completion; -1: as many as reaching the minimum takes
        wait="Wait", think_open="<think>", think_close="</think>", answer_opening="\n<answer>",
        temperature=0.0,
    ))
    return config


# ---------------------------------------------------------------------------------------------
# Validation


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config.{key}: {message}")



def math_benchmark_config(benchmark: str, *, max_new_tokens: int, prompt_batch_size: int, num_samples: int,
                          budgets: tuple[tuple[int, int], ...]) -> ml_collections.ConfigDict:
    """A distilled R1 model (DeepSeek-R1-Distill-Qwen-1.5B's architecture) on a math benchmark: what
    configs/eval_{gsm8k,math500,aime24}.py share; the checkpoint and the data folder come from the command line."""
    config = eval_config()
    config.model.update(name="qwen2.5-1.5b",  # the checkpoint's architecture (tests use it without a checkpoint)
                        checkpoint="/path/to/DeepSeek-R1-Distill-Qwen-1.5B", dtype="bfloat16", param_dtype="bfloat16")
    config.data.update(name=benchmark, template="chat", manual_dir=f"/path/to/{benchmark}")
    config.max_new_tokens = max_new_tokens
    config.stop_strings = ()  # the chat template's end-of-turn token (an EOS) ends a completion
    config.prompt_batch_size = prompt_batch_size
    config.verifier = (dict(name="math", weight=1.0),)
    config.sampling.update(num_samples=num_samples)
    config.beam_search.update(widths=(4,))
    # s1's answer prompt; the math reward reads what follows "Answer:" when there is no \boxed{}.
    config.budget_forcing.update(budgets=budgets, max_answer_tokens=64, answer_opening="\n\nFinal Answer: ")
    return config

def validate_config(config: ml_collections.ConfigDict) -> None:
    """The evaluate mode's keys; raises ConfigError naming the first bad one."""
    validate_tokenizer(config)
    data = config.data
    _check(data.name in EVAL_TASKS, "data.name", f"{data.name!r} is not one of {', '.join(EVAL_TASKS)}")
    templates = EVAL_TASKS[data.name].templates
    _check(data.template in templates, "data.template",
           f"{data.template!r} is not one of {', '.join(templates)} (the {data.name} task's templates)")
    _check(data.num_examples >= 0, "data.num_examples", f"{data.num_examples} must be >= 0 (0: every test problem)")
    if data.name == "countdown":
        validate_countdown_data(data.countdown)
    elif data.name == "code":
        validate_problem_files("code", data.code, file_keys=("test_file",))
    else:
        try:
            benchmarks.check_manual_dir(data.name, data.manual_dir)
        except ValueError as e:
            raise ConfigError(f"config.data.manual_dir: {e}") from None

    methods = tuple(config.methods)
    _check(bool(methods) and all(m in METHODS for m in methods) and len(set(methods)) == len(methods), "methods",
           f"{methods!r} must list some of {', '.join(METHODS)}, each once")
    _check(config.max_new_tokens > 0, "max_new_tokens", f"{config.max_new_tokens} must be positive")
    _check(config.max_prompt_len >= 0, "max_prompt_len",
           f"{config.max_prompt_len} must be >= 0 (0: as the model allows)")
    _check(config.prompt_batch_size > 0, "prompt_batch_size", f"{config.prompt_batch_size} must be positive")
    _check(all(isinstance(s, str) and s for s in config.stop_strings), "stop_strings",
           f"{config.stop_strings!r} must be non-empty strings, e.g. --config.stop_strings=\"('</answer>',)\"")
    _check(bool(config.verifier), "verifier", "is empty; list at least one reward, e.g. [dict(name='math')]")
    _check(config.reward_workers >= 0, "reward_workers", f"{config.reward_workers} must be >= 0 (0: this process)")
    for i, entry in enumerate(config.verifier):
        try:
            resolve(RewardSpec.from_config(entry).name)
        except (KeyError, ValueError, ImportError, TypeError) as e:
            message = str(e).strip("'\"")
            raise ConfigError(f"config.verifier[{i}]: {message}") from None

    if "sampling" in methods:
        s = config.sampling
        _check(s.num_samples >= 1, "sampling.num_samples", f"{s.num_samples} must be >= 1")
        _check(s.temperature > 0, "sampling.temperature",
               f"{s.temperature} must be > 0 (greedy is the 'greedy' method)")
        _check(0 < s.top_p <= 1, "sampling.top_p", f"{s.top_p} must be in (0, 1] (1 turns it off)")
        _check(s.top_k >= 0, "sampling.top_k", f"{s.top_k} must be >= 0 (0 turns it off)")
        _check(s.num_subsets >= 1, "sampling.num_subsets", f"{s.num_subsets} must be >= 1")
    if "beam_search" in methods:
        widths = tuple(config.beam_search.widths)
        _check(bool(widths) and all(isinstance(w, int) and w >= 1 for w in widths), "beam_search.widths",
               f"{widths!r} must be positive integers, e.g. (2, 4)")
    if "budget_forcing" in methods:
        f = config.budget_forcing
        budgets = tuple(tuple(b) if isinstance(b, (tuple, list)) else (b,) for b in f.budgets)
        _check(bool(budgets) and all(len(b) == 2 and 0 <= b[0] <= b[1] and b[1] > 0 for b in budgets),
               "budget_forcing.budgets", f"{budgets!r} must be (min, max) thinking-token pairs with 0 <= min <= max "
                                         "and max > 0, e.g. ((0, 512), (512, 1024))")
        _check(f.max_answer_tokens >= 1, "budget_forcing.max_answer_tokens", f"{f.max_answer_tokens} must be >= 1")
        _check(f.max_waits >= -1, "budget_forcing.max_waits", f"{f.max_waits} must be >= 0, or -1 for no cap")
        for key in ("wait", "think_open", "think_close"):
            _check(bool(f[key]), f"budget_forcing.{key}", "is empty; it must be text")
        _check(f.temperature >= 0, "budget_forcing.temperature", f"{f.temperature} must be >= 0 (0 is greedy)")


# ---------------------------------------------------------------------------------------------
# Problems


def load_problems(data: ml_collections.ConfigDict, tokenizer: Tokenizer,
                  workdir: str) -> tuple[list[Mapping[str, Any]], list[str]]:
    """The first `data.num_examples` test problems of the task (0: all) and their prompt texts."""
    tfds.disable_progress_bar()  # the run's own progress output is what matters
    if data.name == "countdown":
        with distributed.main_process_first("task data"):  # built on first use, by one process
            task = tasks.load_task(data, tokenizer, workdir)
        test, render = task.test, task.render_prompt
    else:
        if data.name == "code":
            test = tasks.read_problems("code", data.code, "test_file")
        else:
            with distributed.main_process_first("benchmark data"):  # built (or rebuilt) by one process
                test = benchmarks.load(data.name, manual_dir=data.manual_dir,
                                       data_dir=data.data_dir or os.path.join(workdir, "data"))
        render = functools.partial(tasks.problem_prompt, EVAL_TASKS[data.name].accuracy_reward, template=data.template,
                                   renderer=tokenizer)

    count = min(data.num_examples or len(test), len(test))
    examples = [test[i] for i in range(count)]
    return examples, [render(e) for e in examples]


# ---------------------------------------------------------------------------------------------
# Methods

Results = dict[str, dict[str, Any]]  # method name -> {"config": settings, "rows": [{"accuracy", ...}]}


class Evaluator:
    """A model, its tokenizer and the problems; one method per public method, each returning `Results`.

    Call the methods inside `sharding.use_mesh(mesh, rules)` with params on that mesh. Sampled completions
    are kept in `samples_dir`; with `preemption`, a signal stops a method before its next batch.
    """

    def __init__(self, config: ml_collections.ConfigDict, model_config: ModelConfig, params: Params,
                 tokenizer: Tokenizer, examples: Sequence[Mapping[str, Any]], prompt_texts: Sequence[str],
                 samples_dir: str, preemption: checkpoint.PreemptionGuard | None = None):
        self.config = config
        self.samples_dir = samples_dir
        self.preemption = preemption
        self.model_config = model_config
        self.params = params
        self.tokenizer = tokenizer
        self.task = EVAL_TASKS[config.data.name]
        self.examples = list(examples)
        self.prompt_texts = list(prompt_texts)
        self.prompts = [tokenizer.encode_prompt(text) for text in prompt_texts]
        self.eos_ids = tuple(tokenizer.eos_ids)
        self.pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
        self.accuracy = RewardSet([dict(name=self.task.accuracy_reward)], num_workers=config.reward_workers)
        self.verifier = RewardSet(list(config.verifier), num_workers=config.reward_workers)
        try:  # a verifier reading fields the task's examples lack fails here, before any sampling
            self.verifier.score_batch([""], self.examples[:1])
        except KeyError as e:
            message = str(e).strip("'\"")
            raise ValueError(f"config.verifier: {message}") from None

    def close(self) -> None:
        """Stops the reward worker processes."""
        self.accuracy.close()
        self.verifier.close()

    # -- shared pieces ----------------------------------------------------------------------

    def _batches(self, desc: str, prompts: Sequence[Sequence[int]] | None = None, first_batch: int = 0,
                 saved_in: str = "") -> Iterator[Sequence[Sequence[int]]]:
        """The prompts a batch at a time from batch `first_batch`; raises StoppedBySignal before a batch
        once a signal came (`saved_in`: where the batches done are kept)."""
        prompts = self.prompts if prompts is None else prompts
        size = self.config.prompt_batch_size
        with tqdm.tqdm(total=len(prompts), initial=min(first_batch * size, len(prompts)), unit="problem",
                       desc=desc) as progress:
            for first in checkpoint.batch_starts(len(prompts), size, first_batch=first_batch,
                                                 preemption=self.preemption, what=f"evaluate ({desc})",
                                                 unit="problems", saved_in=saved_in):
                yield prompts[first:first + size]
                progress.update(len(prompts[first:first + size]))

    def _text(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode_completion(tokens, self.eos_ids)

    def _correct(self, texts: Sequence[str], examples: Sequence[Mapping[str, Any]]) -> np.ndarray:
        scores = self.accuracy.score_batch(texts, examples).total
        return np.array([evaluate.is_correct(score) for score in scores])

    def _sample(self, method: str, num_samples: int, temperature: float, top_p: float, top_k: int,
                desc: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Texts, lengths and mean token log-probs of `num_samples` completions per problem, problem-major,
        continuing the batches already in `<samples_dir>/<method>.jsonl`."""
        c = self.config
        prompts_sha256 = hashlib.sha256(json.dumps(self.prompts).encode()).hexdigest()
        signature = dict(model=c.model.to_dict(), prompts_sha256=prompts_sha256, num_samples=num_samples,
                         temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=c.max_new_tokens,
                         max_prompt_len=c.max_prompt_len, stop_strings=list(c.stop_strings),
                         prompt_batch_size=c.prompt_batch_size, seed=c.seed)
        path = os.path.join(self.samples_dir, f"{method}.jsonl")
        key = jax.random.key(c.seed)
        with records.ResumableWriter(path, signature) as out:
            batches = self._batches(desc, first_batch=out.batches_done, saved_in=path)
            for index, batch in enumerate(batches, start=out.batches_done):
                result = sampler.generate(
                    self.model_config, self.params, batch, max_new_tokens=c.max_new_tokens, num_samples=num_samples,
                    temperature=temperature, top_p=top_p, top_k=top_k, eos_ids=self.eos_ids,
                    stop_strings=tuple(c.stop_strings), tokenizer=self.tokenizer, seed=jax.random.fold_in(key, index),
                    max_prompt_len=c.max_prompt_len or None, pad_id=self.pad_id)
                out.write_batch(dict(text=self._text(tokens[:length]), length=int(length),
                                     mean_logprob=float(np.mean(logprobs[:length])))
                                for tokens, length, logprobs in zip(result.tokens, result.lengths, result.logprobs))
        samples = [r for _, r in records.read_records(path, what="samples")] if out.batches_done else []
        return ([r["text"] for r in samples], np.array([r["length"] for r in samples], np.int32),
                np.array([r["mean_logprob"] for r in samples], np.float64))

    # -- methods ----------------------------------------------------------------------------

    def greedy(self) -> Results:
        texts, lengths, _ = self._sample("greedy", 1, 0.0, 1.0, 0, "greedy")
        rows = [dict(accuracy=float(self._correct(texts, self.examples).mean()), samples_per_question=1,
                     tokens_per_question=float(lengths.mean()))]
        return {"greedy": dict(config=dict(temperature=0.0, max_new_tokens=self.config.max_new_tokens), rows=rows)}

    def sampling(self) -> Results:
        s = self.config.sampling
        n, num_questions = s.num_samples, len(self.examples)
        texts, lengths, mean_logprobs = self._sample("sampling", n, s.temperature, s.top_p, s.top_k,
                                                     f"sampling x{n}")
        row_examples = [e for e in self.examples for _ in range(n)]
        correct_QxN = self._correct(texts, row_examples).reshape(num_questions, n)
        _, verifier = self.verifier.score_batch(texts, row_examples, lengths=lengths.tolist()).as_arrays()
        verifier_QxN = verifier.reshape(num_questions, n)
        logprob_QxN = mean_logprobs.reshape(num_questions, n)
        answers = [self.task.answers.extract(text) for text in texts]
        clusters_QxN = np.array([evaluate.answer_clusters(answers[q * n:(q + 1) * n], self.task.answers.same)
                                 for q in range(num_questions)])
        tokens_per_sample = float(lengths.mean())
        num_correct_Q = correct_QxN.sum(axis=1)

        def curve(accuracy_at: Callable[[int], float]) -> list[dict[str, float]]:
            return [dict(n=k, accuracy=accuracy_at(k), samples_per_question=k,
                         tokens_per_question=k * tokens_per_sample) for k in evaluate.sample_sizes(n)]

        settings = dict(num_samples=n, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                        max_new_tokens=self.config.max_new_tokens)
        return {
            "mean_pass@1": dict(config=settings, rows=[dict(k=n, accuracy=float(correct_QxN.mean()),
                                                            samples_per_question=n,
                                                            tokens_per_question=n * tokens_per_sample)]),
            "pass@k": dict(config=settings, rows=curve(
                lambda k: float(evaluate.pass_at_k_array(n, num_correct_Q, k).mean()))),
            "maj@k": dict(config=dict(settings, num_subsets=s.num_subsets), rows=curve(
                lambda k: evaluate.majority_vote_at(correct_QxN, clusters_QxN, k, num_subsets=s.num_subsets,
                                                    seed=self.config.seed))),
            "best_of_n_verifier": dict(config=dict(settings, verifier=[dict(v) for v in self.config.verifier]),
                                       rows=curve(lambda k: evaluate.best_of_n_at(correct_QxN, verifier_QxN, k))),
            "best_of_n_logprob": dict(config=dict(settings, ranking="mean token log-prob"),
                                      rows=curve(lambda k: evaluate.best_of_n_at(correct_QxN, logprob_QxN, k))),
        }

    def beam_search(self) -> Results:
        b = self.config.beam_search
        rows = []
        for width in b.widths:
            texts, decoded = [], []
            for batch in self._batches(f"beam search x{width}"):
                result = sampler.beam_search(
                    self.model_config, self.params, batch, beam_width=width, max_new_tokens=self.config.max_new_tokens,
                    length_penalty=b.length_penalty, eos_ids=self.eos_ids,
                    max_prompt_len=self.config.max_prompt_len or None, pad_id=self.pad_id)
                texts += [_cut_after_stop(self._text(tokens[:length]), self.config.stop_strings)
                          for tokens, length in zip(result.tokens[:, 0], result.lengths[:, 0])]
                decoded += (width * result.lengths.max(axis=1)).tolist()
            rows.append(dict(width=width, accuracy=float(self._correct(texts, self.examples).mean()),
                             samples_per_question=width, tokens_per_question=float(np.mean(decoded))))
        settings = dict(widths=list(b.widths), length_penalty=b.length_penalty,
                        max_new_tokens=self.config.max_new_tokens)
        return {"beam_search": dict(config=settings, rows=rows)}

    def budget_forcing(self) -> Results:
        f = self.config.budget_forcing
        # Budget forcing continues an open thinking block.
        thinking_prompts = [tokens if text.rstrip().endswith(f.think_open)
                            else self.tokenizer.encode_prompt(text + f.think_open + "\n")
                            for tokens, text in zip(self.prompts, self.prompt_texts)]
        rows = []
        for min_tokens, max_tokens in f.budgets:
            generate_fn = scaling.sampler_generate_fn(self.model_config, self.params, eos_ids=self.eos_ids,
                                                      pad_id=self.pad_id, seed=self.config.seed,
                                                      temperature=f.temperature)
            completions = []
            for batch in self._batches(f"budget forcing {min_tokens}-{max_tokens}", thinking_prompts):
                completions += scaling.budget_forced_generate(
                    generate_fn, self.tokenizer, batch, max_thinking_tokens=max_tokens,
                    min_thinking_tokens=min_tokens, max_answer_tokens=f.max_answer_tokens,
                    max_waits=None if f.max_waits < 0 else f.max_waits, eos_ids=self.eos_ids,
                    think_close=f.think_close, wait=f.wait, answer_opening=f.answer_opening,
                    answer_stops=tuple(self.config.stop_strings))
            texts = [self._text(c.tokens) for c in completions]
            rows.append(dict(
                min_thinking_tokens=min_tokens, max_thinking_tokens=max_tokens,
                accuracy=float(self._correct(texts, self.examples).mean()), samples_per_question=1,
                tokens_per_question=float(np.mean([len(c.tokens) for c in completions])),
                thinking_tokens=float(np.mean([c.thinking_tokens for c in completions])),
                waits=float(np.mean([c.num_waits for c in completions])),
                forced_close=float(np.mean([c.forced_close for c in completions]))))
        settings = {key: f[key] for key in ("max_answer_tokens", "max_waits", "wait", "think_close", "answer_opening",
                                            "temperature")}
        return {"budget_forcing": dict(config=dict(settings, budgets=[list(b) for b in f.budgets]), rows=rows)}


def _cut_after_stop(text: str, stop_strings: Sequence[str]) -> str:
    """`text` up to and including its first stop string, as the sampler cuts samples."""
    ends = [text.find(stop) + len(stop) for stop in stop_strings if stop in text]
    return text[:min(ends)] if ends else text


# ---------------------------------------------------------------------------------------------
# Report


def _format_table(title: str, rows: Sequence[Mapping[str, Any]]) -> str:
    columns = list(rows[0])
    cells = [[f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(f"{c:>{w}}" for c, w in zip(columns, widths))]
    lines += ["  ".join(f"{cell:>{w}}" for cell, w in zip(line, widths)) for line in cells]
    return "\n".join([title, *lines])


def format_tables(report: Mapping[str, Any]) -> str:
    """The report as text: one table per method, the sampling curves in one (a column per curve)."""
    methods = report["methods"]
    tables = [f"{report['task']}: {report['num_questions']} problems, model {report['model']}"]
    curves = [c for c in CURVES if c in methods]
    for name, result in methods.items():
        if curves and name == curves[0]:
            rows = [dict(N=point["n"], **{c: methods[c]["rows"][i]["accuracy"] for c in curves},
                         tokens_per_question=point["tokens_per_question"]) for i, point in enumerate(result["rows"])]
            s = result["config"]
            tables.append(_format_table(
                f"sampling: {s['num_samples']} samples per problem at temperature {s['temperature']}, top-p "
                f"{s['top_p']}; mean pass@1 {methods['mean_pass@1']['rows'][0]['accuracy']:.3f}", rows))
        elif name not in CURVES and name != "mean_pass@1":
            tables.append(_format_table(name, result["rows"]))
    return "\n\n".join(tables)


def plot_report(report: Mapping[str, Any], png_path: str) -> str:
    """Accuracy against samples per problem (log2) and against generated tokens per problem (log)."""
    methods = report["methods"]
    figure = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    by_samples, by_tokens = figure.subplots(1, 2)
    dashed = ("best_of_n_verifier", "beam_search")  # pass@k hides the first under an oracle verifier
    for name, result in methods.items():
        if name == "mean_pass@1":
            continue  # pass@k's first point
        rows = result["rows"]
        accuracy = [row["accuracy"] for row in rows]
        style = dict(marker="o", markersize=3, linewidth=1.2, linestyle="--" if name in dashed else "-", label=name)
        if name != "budget_forcing":  # one sample each: it spends tokens, not samples
            by_samples.plot([row["samples_per_question"] for row in rows], accuracy, **style)
        by_tokens.plot([row["tokens_per_question"] for row in rows], accuracy, **style)
    by_samples.set_xscale("log", base=2)
    by_samples.xaxis.set_major_formatter(FormatStrFormatter("%d"))
    by_samples.set_xlabel("samples per problem (N)")
    by_tokens.set_xscale("log")
    by_tokens.set_xlabel("generated tokens per problem")
    for ax in (by_samples, by_tokens):
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        if ax.lines:  # a run of budget forcing alone has nothing per sample
            ax.legend(fontsize=7)
    figure.suptitle(f"{report['task']} ({report['num_questions']} problems): {report['model']}", fontsize=9)
    figure.savefig(png_path, format="png")
    return png_path


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Evaluates every method of `config.methods`; writes report.json and scaling.png, prints the tables."""
    validate_config(config)
    mesh, rules = runtime.mesh_and_rules(config)
    model_config = runtime.model_config(config)
    params = sampler.per_layer_params(runtime.load_or_init_params(config, model_config, mesh, rules))
    tokenizer = runtime.tokenizer(config, workdir)
    if tokenizer.vocab_size > model_config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                         f"{model_config.vocab_size}; use the model's tokenizer")
    examples, prompt_texts = load_problems(config.data, tokenizer, workdir)
    report: dict[str, Any] = dict(task=config.data.name, model=config.model.checkpoint or config.model.name,
                                  num_questions=len(examples), seed=config.seed, methods={}, seconds={})
    with sharding.use_mesh(mesh, rules), checkpoint.PreemptionGuard() as preemption:
        evaluator = Evaluator(config, model_config, params, tokenizer, examples, prompt_texts,
                              os.path.join(workdir, "samples"), preemption)
        try:
            for method in config.methods:
                start = time.perf_counter()
                report["methods"].update(getattr(evaluator, method)())
                report["seconds"][method] = time.perf_counter() - start
        finally:
            evaluator.close()
    with open(os.path.join(workdir, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    report["plot"] = plot_report(report, os.path.join(workdir, "scaling.png"))
    print(format_tables(report))
    print(f"\nreport: {os.path.join(workdir, 'report.json')}\nplot: {report['plot']}")
    return report
