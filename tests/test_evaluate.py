"""Evaluation metrics (pass@k, majority vote, cons@k, best-of-N) and budget forcing."""

import itertools
import json
import math
import operator
from fractions import Fraction

import jax
import numpy as np
import pytest
from bpe import train_byte_level_bpe

from r1jax import evaluate, sampler, scaling
from r1jax import model as model_lib
from r1jax.data import prompts
from r1jax.data.char_tokenizer import EOS, vocab_size, write_char_tokenizer
from r1jax.rewards import countdown
from r1jax.rewards import math as math_reward
from r1jax.tokenizer import load_tokenizer

# ---------------------------------------------------------------------------------------------
# pass@k


def _brute_force_pass_at_k(n, c, k):
    """Fraction of all k-subsets of n samples (c correct) that hold a correct one."""
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(outcomes, k))
    return Fraction(sum(any(subset) for subset in subsets), len(subsets))


def test_pass_at_k_matches_enumerating_every_subset():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 11))
        c = int(rng.integers(0, n + 1))
        k = int(rng.integers(1, n + 1))
        assert evaluate.pass_at_k(n, c, k) == pytest.approx(float(_brute_force_pass_at_k(n, c, k)), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("n, c, k", [(500, 3, 100), (1000, 1, 1), (10_000, 1, 1), (200, 150, 10), (64, 7, 16)])
def test_pass_at_k_is_accurate_where_binomials_are_huge(n, c, k):
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert evaluate.pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)


def test_pass_at_k_edge_cases():
    assert evaluate.pass_at_k(10, 0, 5) == 0.0
    assert evaluate.pass_at_k(10, 10, 1) == 1.0
    assert evaluate.pass_at_k(10, 6, 5) == 1.0  # only 4 wrong samples: every 5-subset holds a correct one
    assert evaluate.pass_at_k(7, 3, 1) == pytest.approx(3 / 7)
    assert evaluate.pass_at_k(1, 1, 1) == 1.0
    assert 0.0 < evaluate.pass_at_k(100_000, 1, 2) < 1e-4  # no underflow to 0, no overflow


@pytest.mark.parametrize("n, c, k, error", [
    (5, 2, 6, ValueError),  # k > n
    (5, 6, 1, ValueError),  # c > n
    (5, -1, 1, ValueError),
    (5, 2, 0, ValueError),
    (5.0, 2, 1, TypeError),
    (5, 2.5, 1, TypeError),
])
def test_pass_at_k_rejects_bad_arguments(n, c, k, error):
    with pytest.raises(error):
        evaluate.pass_at_k(n, c, k)


def test_pass_at_k_array_is_elementwise_and_broadcasts():
    n = np.array([[5, 10, 3], [8, 8, 8]])
    c = np.array([[1, 0, 3], [2, 4, 7]])
    got = evaluate.pass_at_k_array(n, c, 2)
    assert got.shape == (2, 3)
    expected = [[evaluate.pass_at_k(int(a), int(b), 2) for a, b in zip(row_n, row_c)] for row_n, row_c in zip(n, c)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(evaluate.pass_at_k_array(4, [0, 1, 2, 3, 4], 1), [0, 0.25, 0.5, 0.75, 1], rtol=1e-12)
    with pytest.raises(ValueError, match="k=4 exceeds"):
        evaluate.pass_at_k_array([8, 3], [1, 1], 4)


# ---------------------------------------------------------------------------------------------
# Majority vote


def test_majority_vote_counts_votes():
    assert evaluate.majority_vote(["3", "5", "3"]) == ("3", 2)


def test_majority_vote_tie_goes_to_the_answer_seen_first():
    assert evaluate.majority_vote(["7", "4", "4", "7", "9"]) == ("7", 2)
    assert evaluate.majority_vote(["4", "7", "7", "4", "9"]) == ("4", 2)


def test_unreadable_answers_never_win():
    assert evaluate.majority_vote([None, None, None, "4"]) == ("4", 1)
    assert evaluate.majority_vote([None, "", None, "2", ""]) == ("2", 1)
    assert evaluate.majority_vote([None, None]) == (None, 0)
    assert evaluate.majority_vote([]) == (None, 0)


def test_math_equivalent_answers_vote_together():
    answers = ["0.5", "2", "1/2", "\\frac12", "2", "\\frac{1}{2}"]
    assert evaluate.majority_vote(answers) == ("0.5", 4)
    # Exact string matching would split the halves and elect "2": the equivalence is what decides.
    assert evaluate.majority_vote(answers, operator.eq) == ("2", 2)


def test_unparseable_math_answers_only_match_themselves():
    assert evaluate.majority_vote(["@@", "##", "@@"]) == ("@@", 2)


def test_countdown_equations_vote_together_only_up_to_whitespace():
    equations = ["3*(2+1)", "(1 + 2) * 3", "(1+2)*3", "3 * (2 + 1)", " (1+2) *3 "]
    # "3*(2+1)" has the same value but is a different equation.
    assert evaluate.majority_vote(equations, evaluate.same_countdown_equation) == ("(1 + 2) * 3", 3)


# ---------------------------------------------------------------------------------------------
# Per-question metrics


def _math_samples(completions, gold):
    return [(completion, math_reward.score(completion, gold)) for completion in completions]


def _countdown_samples(equations, nums, target):
    completions = [f"<think>...</think><answer>{equation}</answer>" for equation in equations]
    return [(completion, countdown.score(completion, nums, target)) for completion in completions]


def test_r1_sampling_constants():
    assert (evaluate.R1_EVAL_TEMPERATURE, evaluate.R1_EVAL_TOP_P) == (0.6, 0.95)


def test_mean_pass_at_1_counts_only_full_scores():
    # Countdown's 0.1 format score is not a right answer; None (an unreadable gold) is not either.
    assert evaluate.mean_pass_at_1([("a", 1.0), ("b", 0.0), ("c", 0.1), ("d", None)]) == 0.25
    assert evaluate.mean_pass_at_1([("a", 1.0), ("c", 0.1)], correct_score=0.1) == 1.0
    with pytest.raises(ValueError):
        evaluate.mean_pass_at_1([])


def test_cons_at_k_judges_the_voted_math_answer():
    right = _math_samples(["\\boxed{1/2}", "\\boxed{3}", "\\boxed{3}", "\\boxed{0.5}", "so \\boxed{\\frac12}"], "0.5")
    assert evaluate.mean_pass_at_1(right) == pytest.approx(0.6)
    assert evaluate.cons_at_k(right) == 1.0
    wrong = _math_samples(["\\boxed{3}", "\\boxed{0.5}", "The answer is 3", "no idea"], "0.5")
    assert evaluate.cons_at_k(wrong) == 0.0
    assert evaluate.cons_at_k(_math_samples(["no idea", "still none"], "0.5")) == 0.0


def test_cons_at_k_on_countdown_votes_over_equations():
    nums, target = [1, 2, 3], 9
    # Two spellings of one right equation beat one wrong equation...
    samples = _countdown_samples(["1+2+3", "(1+2)*3", "(1 + 2) * 3"], nums, target)
    assert evaluate.cons_at_k(samples, evaluate.COUNTDOWN_ANSWERS) == 1.0
    # ...but two different right equations split their votes, and the wrong one seen first wins the tie.
    samples = _countdown_samples(["1+2+3", "(1+2)*3", "3*(2+1)", "1+2+3"], nums, target)
    assert evaluate.mean_pass_at_1(samples) == 0.5
    assert evaluate.cons_at_k(samples, evaluate.COUNTDOWN_ANSWERS) == 0.0


def test_best_of_n_index_breaks_ties_by_order_and_ranks_missing_scores_last():
    assert evaluate.best_of_n_index([0.5, 0.9, 0.9, 0.1]) == 1
    assert evaluate.best_of_n_index([None, float("nan"), -1.0]) == 2
    assert evaluate.best_of_n_index([None, float("nan")]) == 0
    assert evaluate.best_of_n_index([float("-inf"), None]) == 0
    with pytest.raises(ValueError):
        evaluate.best_of_n_index([])


def test_best_of_n_uses_the_ranking_not_the_answer_key():
    samples = _math_samples(["short \\boxed{3}", "a much longer attempt \\boxed{0.5}", "\\boxed{4}"], "0.5")
    assert evaluate.best_of_n(samples, rank_by=len) == 1.0
    assert evaluate.best_of_n(samples, rank_by=lambda text: -len(text)) == 0.0
    # Every candidate ties: the first one is chosen, and it is wrong.
    assert evaluate.best_of_n(samples, rank_by=lambda text: 0.0) == 0.0
    # An oracle verifier makes best-of-N pass@N.
    assert evaluate.best_of_n(samples, rank_by=lambda text: math_reward.score(text, "0.5")) == 1.0


# ---------------------------------------------------------------------------------------------
# Scaling curves from one set of samples


def test_sample_sizes_are_powers_of_two_and_the_total():
    assert evaluate.sample_sizes(1) == [1]
    assert evaluate.sample_sizes(64) == [1, 2, 4, 8, 16, 32, 64]
    assert evaluate.sample_sizes(12) == [1, 2, 4, 8, 12]
    with pytest.raises(ValueError):
        evaluate.sample_sizes(0)


def test_answer_clusters_number_answers_by_first_appearance():
    answers = ["3", None, "1/2", "0.5", "", "3", "\\frac{1}{2}", "7"]
    assert evaluate.answer_clusters(answers, evaluate.same_math_answer) == [0, -1, 1, 1, -1, 0, 1, 2]


def _random_scripted_samples(rng, num_questions, n):
    """Countdown-like answers (some equal up to whitespace, some unreadable), correctness by answer, and
    rankings with ties, NaNs and -inf."""
    pool = {"1+2": True, " 1 + 2": True, "2+1": True, "1*2": False, "2-1": False, None: False}
    answers = [[list(pool)[i] for i in rng.integers(0, len(pool), n)] for _ in range(num_questions)]
    correct_QxN = np.array([[pool[a] for a in row] for row in answers])
    clusters_QxN = np.array([evaluate.answer_clusters(row, evaluate.same_countdown_equation) for row in answers])
    ranking_QxN = rng.integers(0, 3, (num_questions, n)).astype(float)
    ranking_QxN[rng.random(ranking_QxN.shape) < 0.2] = np.nan
    ranking_QxN[rng.random(ranking_QxN.shape) < 0.1] = -np.inf
    return answers, correct_QxN, clusters_QxN, ranking_QxN


def test_curves_equal_the_mean_over_every_subset():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(1, 8))
        answers, correct_QxN, clusters_QxN, ranking_QxN = _random_scripted_samples(rng, 3, n)
        for k in range(1, n + 1):
            votes, best = [], []
            for q in range(3):
                samples = [(f"<answer>{a}</answer>" if a else "none", 1.0 if c else 0.0)
                           for a, c in zip(answers[q], correct_QxN[q])]
                subsets = list(itertools.combinations(range(n), k))
                votes.append(np.mean([evaluate.cons_at_k([samples[i] for i in s], evaluate.COUNTDOWN_ANSWERS)
                                      for s in subsets]))
                ranking = [None if np.isnan(r) else r for r in ranking_QxN[q]]
                best.append(np.mean([correct_QxN[q][s[evaluate.best_of_n_index([ranking[i] for i in s])]]
                                     for s in subsets]))
            assert evaluate.majority_vote_at(correct_QxN, clusters_QxN, k) == pytest.approx(np.mean(votes), abs=1e-12)
            assert evaluate.best_of_n_at(correct_QxN, ranking_QxN, k) == pytest.approx(np.mean(best), abs=1e-12)


def test_majority_vote_over_random_subsets_estimates_the_exact_mean():
    _, correct_QxN, clusters_QxN, _ = _random_scripted_samples(np.random.default_rng(1), 20, 12)
    exact = evaluate.majority_vote_at(correct_QxN, clusters_QxN, 6, num_subsets=math.comb(12, 6))
    estimates = [evaluate.majority_vote_at(correct_QxN, clusters_QxN, 6, num_subsets=200, seed=seed)
                 for seed in range(5)]
    assert len(set(estimates)) > 1  # random subsets, not every one
    assert np.mean(estimates) == pytest.approx(exact, abs=0.02)


def test_curves_reject_bad_shapes_and_sizes():
    correct_QxN = np.ones((2, 4), bool)
    with pytest.raises(ValueError, match="N=5"):
        evaluate.best_of_n_at(correct_QxN, np.zeros((2, 4)), 5)
    with pytest.raises(ValueError, match="shape"):
        evaluate.majority_vote_at(correct_QxN, np.zeros((2, 3), int), 1)
    assert evaluate.majority_vote_at(correct_QxN, np.full((2, 4), -1), 2) == 0.0  # nothing readable


# ---------------------------------------------------------------------------------------------
# Budget forcing

PROMPT_TEXT = prompts.compact_prompt([1, 2], 3)  # ends with "<think>"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(write_char_tokenizer(str(tmp_path_factory.mktemp("char_tokenizer"))))


class ScriptedModel:
    """A GenerateFn whose call i returns `script[i]` (one text per prompt), cut to max_new_tokens like a sampler.

    It ignores stop sequences, so text after `</think>` checks that the forcer cuts there itself.
    Every call is recorded as (decoded prompts, max_new_tokens, decoded stop sequences).
    """

    def __init__(self, tokenizer, script):
        self.tokenizer = tokenizer
        self.script = script
        self.calls = []

    def __call__(self, prompt_ids, max_new_tokens, stop_sequences):
        texts = self.script[len(self.calls)]
        assert len(texts) == len(prompt_ids)
        self.calls.append(([self.tokenizer.decode(p) for p in prompt_ids], max_new_tokens,
                           [self.tokenizer.decode(s) for s in stop_sequences]))
        return [self.tokenizer.encode(text)[:max_new_tokens] for text in texts]


def _force(tokenizer, script, *, prompt_texts=(PROMPT_TEXT,), **kwargs):
    model = ScriptedModel(tokenizer, script)
    kwargs = dict(max_answer_tokens=5, eos_ids=tokenizer.eos_ids, answer_stops=("</answer>",)) | kwargs
    results = scaling.budget_forced_generate(model, tokenizer, [tokenizer.encode(t) for t in prompt_texts], **kwargs)
    return results, model.calls


def test_char_tokenizer_costs_assumed_below(tokenizer):
    # The token counts in the tests below rely on these.
    assert len(tokenizer.encode("</think>")) == 1
    assert len(tokenizer.encode("Wait")) == 4
    assert len(tokenizer.encode("\n<answer>")) == 2


def test_natural_close_after_the_minimum_is_kept(tokenizer):
    [result], calls = _force(tokenizer, [["abc</think>ignored"], ["1+2</answer>"]],
                             min_thinking_tokens=2, max_thinking_tokens=10)
    assert tokenizer.decode(result.tokens) == "abc</think>\n<answer>1+2</answer>"
    assert (result.thinking_tokens, result.num_waits, result.forced_close) == (3, 0, False)
    assert calls == [([PROMPT_TEXT], 10, ["</think>"]),
                     ([PROMPT_TEXT + "abc</think>\n<answer>"], 5, ["</answer>"])]


def test_early_close_is_replaced_by_wait_until_the_minimum(tokenizer):
    [result], calls = _force(tokenizer, [["ab</think>"], ["cd</think>"], ["e</think>"], ["7</answer>"]],
                             min_thinking_tokens=10, max_thinking_tokens=30)
    # 2 tokens < 10: Wait (6); 8 < 10: Wait (12); 13 >= 10: the close stands.
    assert tokenizer.decode(result.tokens) == "abWaitcdWaite</think>\n<answer>7</answer>"
    assert (result.thinking_tokens, result.num_waits, result.forced_close) == (13, 2, False)
    assert [prompt for [prompt], _, _ in calls] == [
        PROMPT_TEXT, PROMPT_TEXT + "abWait", PROMPT_TEXT + "abWaitcdWait", PROMPT_TEXT + "abWaitcdWaite</think>\n<answer>"]
    assert [max_new_tokens for _, max_new_tokens, _ in calls] == [30, 24, 18, 5]


def test_close_is_forced_at_the_maximum(tokenizer):
    [result], calls = _force(tokenizer, [["abcdefgh</think>"], ["9</answer>"]], max_thinking_tokens=5)
    assert tokenizer.decode(result.tokens) == "abcde</think>\n<answer>9</answer>"
    assert result.tokens[5] == tokenizer.token_to_id("</think>")
    assert (result.thinking_tokens, result.num_waits, result.forced_close) == (5, 0, True)
    assert calls[0][1] == 5


@pytest.mark.parametrize("max_thinking_tokens, expected, waits, forced", [
    (8, "abcd</think>", 0, False),  # 4 + len("Wait") leaves no room to think on: the close stands
    (9, "abcdWaitz</think>", 1, True),  # one token of room: "z", then the budget forces the close
])
def test_wait_is_only_inserted_with_room_to_continue(tokenizer, max_thinking_tokens, expected, waits, forced):
    [result], _ = _force(tokenizer, [["abcd</think>"], ["zz"], ["x"]][:2 + waits],
                         min_thinking_tokens=max_thinking_tokens, max_thinking_tokens=max_thinking_tokens)
    assert tokenizer.decode(result.tokens) == expected + "\n<answer>" + ("zz" if waits == 0 else "x")
    assert (result.num_waits, result.forced_close) == (waits, forced)


@pytest.mark.parametrize("min_thinking_tokens, expected", [
    (0, "ab</think>\n<answer>5"),
    (3, "abWaitcd</think>\n<answer>5"),
])
def test_eos_while_thinking_counts_as_ending_the_thinking(tokenizer, min_thinking_tokens, expected):
    script = [[f"ab{EOS}cd"], ["cd"], ["5"]] if min_thinking_tokens else [[f"ab{EOS}cd"], ["5"]]
    [result], _ = _force(tokenizer, script, min_thinking_tokens=min_thinking_tokens, max_thinking_tokens=20)
    assert tokenizer.decode(result.tokens) == expected
    # "cd" stopped short of its budget without a close: the generate function ended it, not the budget.
    assert not result.forced_close


def test_max_waits_caps_the_extensions(tokenizer):
    [result], calls = _force(tokenizer, [["a</think>"], ["b</think>"], ["c"]],
                             min_thinking_tokens=100, max_thinking_tokens=200, max_waits=1)
    assert tokenizer.decode(result.tokens) == "aWaitb</think>\n<answer>c"
    assert (result.num_waits, result.forced_close, len(calls)) == (1, False, 3)


def test_rows_of_a_batch_are_forced_independently(tokenizer):
    second_prompt = prompts.compact_prompt([4, 5], 9)
    results, calls = _force(tokenizer, [["ab</think>", "abcdefghij"], ["c</think>"], ["1", "2"]],
                            prompt_texts=(PROMPT_TEXT, second_prompt), min_thinking_tokens=6, max_thinking_tokens=8)
    assert [tokenizer.decode(r.tokens) for r in results] == [
        "abWaitc</think>\n<answer>1", "abcdefgh</think>\n<answer>2"]
    assert [(r.num_waits, r.forced_close) for r in results] == [(1, False), (0, True)]
    # Round two holds only the row still thinking, with its remaining budget.
    assert calls[1] == ([PROMPT_TEXT + "abWait"], 2, ["</think>"])
    assert calls[2][0] == [PROMPT_TEXT + "abWaitc</think>\n<answer>", second_prompt + "abcdefgh</think>\n<answer>"]


def test_each_row_keeps_its_own_budget_in_a_shared_round(tokenizer):
    results, calls = _force(tokenizer, [["ab</think>", "a</think>"], ["cdefgh", "vwxyz"], ["1", "2"]],
                            prompt_texts=(PROMPT_TEXT, PROMPT_TEXT), min_thinking_tokens=6, max_thinking_tokens=10)
    # Round two runs to the larger remaining budget (5); the first row had only 4 left.
    assert calls[1][1] == 5
    assert [tokenizer.decode(r.tokens) for r in results] == [
        "abWaitcdef</think>\n<answer>1", "aWaitvwxyz</think>\n<answer>2"]
    assert all(r.thinking_tokens == 10 and r.forced_close for r in results)


def test_zero_thinking_budget_closes_at_once(tokenizer):
    [result], calls = _force(tokenizer, [["8"]], max_thinking_tokens=0, answer_opening="\nFinal Answer: ")
    assert tokenizer.decode(result.tokens) == "</think>\nFinal Answer: 8"
    assert (result.thinking_tokens, result.forced_close, len(calls)) == (0, True, 1)


@pytest.mark.parametrize("kwargs", [
    dict(min_thinking_tokens=5, max_thinking_tokens=4),
    dict(min_thinking_tokens=-1, max_thinking_tokens=4),
    dict(max_thinking_tokens=4, max_answer_tokens=0),
    dict(max_thinking_tokens=4, max_waits=-1),
])
def test_budget_forcing_rejects_bad_budgets(tokenizer, kwargs):
    with pytest.raises(ValueError):
        _force(tokenizer, [], **kwargs)


@pytest.fixture(scope="module")
def qwen25_like_tokenizer(tmp_path_factory):
    """A byte-level BPE where, as in Qwen2.5's, `</think>` is several tokens and a space before it merges into
    the first: " </think>" is not " " + encode("</think>")."""
    directory = tmp_path_factory.mktemp("bpe")
    corpus = ["Let me think. 3 + 4 = 7 </think> <answer> 3 + 4 </answer>",
              "so 9 * 5 = 45 </think>\n<answer> 9 * 5 </answer>"] * 200
    train_byte_level_bpe(corpus, vocab_size=400, special_tokens=["<|endoftext|>"]).save(
        str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>", "bos_token": None}))
    tokenizer = load_tokenizer(directory)
    spaced = tokenizer.encode(" </think>")
    assert len(tokenizer.encode("</think>")) > 1 and spaced[1:] != tokenizer.encode("</think>")
    return tokenizer


def test_stop_string_sequences_spell_the_string_after_a_space_too(qwen25_like_tokenizer):
    tokenizer = qwen25_like_tokenizer
    sequences = sampler.stop_string_sequences(tokenizer, ["</think>", "</answer>"])
    for stop in ("</think>", "</answer>"):
        assert tokenizer.encode(stop) in sequences
        spaced = tokenizer.encode(" " + stop)
        assert any(spaced[-len(s):] == s and tokenizer.decode(s) != stop for s in sequences)
    for sequence in sequences:  # each holds a stop string, and no shorter suffix does
        assert any(stop in tokenizer.decode(sequence) for stop in ("</think>", "</answer>"))
        assert not any(stop in tokenizer.decode(sequence[1:]) for stop in ("</think>", "</answer>"))


def test_budget_forcing_finds_a_close_and_a_stop_spelled_in_other_tokens(qwen25_like_tokenizer):
    tokenizer = qwen25_like_tokenizer
    [eos] = tokenizer.eos_ids
    thinking = " 3 + 4 = 7 </think>\n<answer> 3 + 4 </answer> more <answer> 3 * 4 </answer>"
    answer = " 3 + 4 </answer> more <answer> 3 * 4 </answer>"
    stops_seen = []

    def generate_fn(prompt_ids, max_new_tokens, stop_sequences):
        """Writes the same text whatever the prompt; stops after a stop sequence or EOS, as the sampler does."""
        stops_seen.append([tokenizer.decode(s) for s in stop_sequences])
        outputs = []
        for prompt in prompt_ids:
            text = answer if tokenizer.decode(prompt).endswith("<answer>") else thinking
            output = []
            for token in (tokenizer.encode(text) + [eos])[:max_new_tokens]:
                output.append(token)
                if token == eos or any(output[-len(s):] == list(s) for s in stop_sequences):
                    break
            outputs.append(output)
        return outputs

    prompt = tokenizer.encode("Numbers: 3 4. Target: 7.\n<think>")
    [result] = scaling.budget_forced_generate(generate_fn, tokenizer, [prompt], max_thinking_tokens=60,
                                              max_answer_tokens=40, eos_ids=[eos], answer_stops=("</answer>",))
    assert tokenizer.decode(result.tokens) == " 3 + 4 = 7</think>\n<answer> 3 + 4 </answer>"
    assert (result.thinking_tokens, result.forced_close) == (len(tokenizer.encode(" 3 + 4 = 7")), False)
    assert " </think>" in stops_seen[0] and " </answer>" in stops_seen[1]  # the spellings that stop early
    assert countdown.score(tokenizer.decode(result.tokens), [3, 4], 7) == 1.0


def test_budget_forcing_with_the_real_sampler(tokenizer):
    config = model_lib.get_model_config("tiny-qwen3", vocab_size=vocab_size())
    params = model_lib.init_params(config, jax.random.key(0))
    pad_id = tokenizer.pad_id
    generate_fn = scaling.sampler_generate_fn(config, params, eos_ids=tokenizer.eos_ids, pad_id=pad_id,
                                              temperature=0.0, top_p=1.0)
    prompt = tokenizer.encode(PROMPT_TEXT)
    [result] = scaling.budget_forced_generate(generate_fn, tokenizer, [prompt], max_thinking_tokens=6,
                                              max_answer_tokens=4, eos_ids=tokenizer.eos_ids)
    close_and_opening = tokenizer.encode("</think>\n<answer>")
    text = tokenizer.decode(result.tokens)
    # The random model does not close its thinking in 6 greedy tokens, so the close is forced there.
    assert result.forced_close and result.thinking_tokens == 6
    assert result.tokens[6:9] == close_and_opening and "</think>\n<answer>" in text

    def greedy(prompt_ids, max_new_tokens, stop_sequences):
        # The same stops as the forcer's calls, so the compiled sampler is reused.
        out = sampler.generate(config, params, [prompt_ids], max_new_tokens=max_new_tokens, temperature=0.0,
                               eos_ids=tokenizer.eos_ids, stop_sequences=stop_sequences, pad_id=pad_id)
        return out.tokens[0, :out.lengths[0]].tolist()

    # Thinking and answer are the sampler's own greedy continuations of what precedes them.
    assert result.tokens[:6] == greedy(prompt, 6, [tokenizer.encode("</think>")])
    assert result.tokens[9:] == greedy(prompt + result.tokens[:9], 4, [])
