"""`mode: pipeline`: stage wiring, validation, and a restart that resumes at the unfinished stage."""

import json
import os
import time

import pytest

from r1jax import pipeline
from r1jax.config import ConfigError, load_config_file, validate
from r1jax.main import MODES
from r1jax.rl import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)  # stage config paths are relative to the current directory, as --config's are


def _pipeline(*stages, **vars_):
    config = pipeline.pipeline_config()
    config.vars.update(vars_)
    config.stages = list(stages)
    return config


SFT = "configs/sft_journey_tiny.py:journey,smoke"


@pytest.mark.parametrize("stages,message", [
    ((), "config.stages: is empty"),
    (({"name": "a"},), r"config.stages\[0\]: .* must be a dict with 'name', 'config'"),
    (({"name": "a", "config": SFT, "extra": 1},), r"config.stages\[0\]"),
    (({"name": "1st", "config": SFT},), r"config.stages\[0\].name: '1st' must be a new identifier"),
    (({"name": "a", "config": SFT}, {"name": "a", "config": SFT}), r"config.stages\[1\].name: 'a'"),
    (({"name": "base", "config": SFT},), r"config.stages\[0\].name: 'base'"),  # a var's name
    (({"name": "a", "config": "configs/missing.py"},), r"'configs/missing.py' is not a file"),
    (({"name": "a", "config": "configs/r1_pipeline_tiny.py"},), r"its mode 'pipeline' cannot be a stage"),
    (({"name": "a", "config": SFT, "overrides": {"model.checkpoint": "{b}/hf_export"}},
      {"name": "b", "config": SFT}), r"\{b\} is neither an earlier stage nor a var"),
])
def test_bad_pipelines_are_one_line_errors_before_anything_runs(stages, message):
    with pytest.raises(ConfigError, match=message):
        validate(_pipeline(*stages, base="/some/base"), known_modes=MODES, num_devices=8)


def test_overrides_name_earlier_stages_and_vars():
    stage = {"name": "b", "config": SFT, "overrides": {"model.checkpoint": "{a}/hf_export", "steps": 7,
                                                       "data.train_file": "{base}/x.jsonl"}}
    config = pipeline.stage_config(stage, {"a": "/runs/a", "base": "/models/base"})
    assert config.model.checkpoint == "/runs/a/hf_export" and config.steps == 7
    assert config.data.train_file == "/models/base/x.jsonl"
    with pytest.raises(ConfigError, match=r"stage b: override no_such\.key=1 does not fit"):
        pipeline.stage_config({"name": "b", "config": SFT, "overrides": {"no_such.key": 1}}, {})
    with pytest.raises(ConfigError, match=r"override steps='many' does not fit"):
        pipeline.stage_config({"name": "b", "config": SFT, "overrides": {"steps": "many"}}, {})
    with pytest.raises(ConfigError, match=r"override sft\.seqlen=64 does not fit"):  # a new field in a section
        pipeline.stage_config({"name": "b", "config": SFT, "overrides": {"sft.seqlen": 64}}, {})


def test_doubled_braces_are_literal_text_in_an_override():
    stage = {"name": "b", "config": SFT, "overrides": {"data.train_file": "{a}/{{shard}}-{{a}}.jsonl"}}
    validate(_pipeline({"name": "a", "config": SFT}, stage), known_modes=MODES, num_devices=8)
    assert pipeline.stage_config(stage, {"a": "/runs/a"}).data.train_file == "/runs/a/{shard}-{a}.jsonl"


def test_an_unfinished_stage_whose_config_changed_is_refused_unless_allowed(tmp_path, monkeypatch):
    from r1jax import sft

    monkeypatch.setattr(sft, "run", lambda stage_config, workdir: {"steps": stage_config.steps, "stopped": True})
    started = _pipeline({"name": "a", "config": SFT, "overrides": {"steps": 5}})
    pipeline.run(started, str(tmp_path))
    pipeline.run(started, str(tmp_path))  # the same config continues
    edited = _pipeline({"name": "a", "config": SFT, "overrides": {"steps": 9}})  # as if the file were edited
    with pytest.raises(ConfigError, match=f"stage a: {tmp_path / 'a'} holds a run of another config "
                                          r"\(steps: 5 -> 9\); .* --allow_config_change"):
        pipeline.run(edited, str(tmp_path))
    assert json.loads((tmp_path / "a" / "config.json").read_text())["steps"] == 5
    pipeline.run(edited, str(tmp_path), allow_config_change=True)
    assert json.loads((tmp_path / "a" / "config.json").read_text())["steps"] == 9


def test_a_finished_stage_whose_config_changed_is_refused_or_kept_but_not_silently_reused(tmp_path, monkeypatch):
    from r1jax import sft

    runs = []
    monkeypatch.setattr(sft, "run", lambda stage_config, workdir: runs.append(stage_config.steps) or {"steps": 5})
    pipeline.run(_pipeline({"name": "a", "config": SFT, "overrides": {"steps": 5}}), str(tmp_path))
    edited = _pipeline({"name": "a", "config": SFT, "overrides": {"steps": 9}})
    with pytest.raises(ConfigError, match=f"stage a finished in {tmp_path / 'a'} with another config "
                                          rf"\(steps: 5 -> 9\); delete {tmp_path / 'a'} to run it again"):
        pipeline.run(edited, str(tmp_path))
    assert [r["name"] for r in pipeline.run(edited, str(tmp_path), allow_config_change=True)] == ["a"]
    assert runs == [5]  # kept, not run again
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    del saved["sft"]["seq_len"]  # as if a newer r1jax added the setting after the stage finished
    (tmp_path / "a" / "config.json").write_text(json.dumps(saved))
    assert [r["name"] for r in pipeline.run(_pipeline({"name": "a", "config": SFT, "overrides": {"steps": 5}}),
                                            str(tmp_path))] == ["a"]


def test_a_stage_that_reads_an_earlier_stage_run_again_since_is_refused_unless_kept(tmp_path, monkeypatch):
    import shutil

    from r1jax import sft

    runs = []

    def sft_run(stage_config, workdir):
        runs.append(os.path.basename(workdir))
        os.makedirs(os.path.join(workdir, "tokenizer"))  # what the next stage reads
        return {"steps": 1}

    monkeypatch.setattr(sft, "run", sft_run)
    chain = _pipeline({"name": "first", "config": SFT}, {"name": "unrelated", "config": SFT},
                      {"name": "second", "config": SFT, "overrides": {"tokenizer": "{first}/tokenizer"}})
    pipeline.run(chain, str(tmp_path))
    pipeline.run(chain, str(tmp_path))  # nothing ran again: nothing is stale
    assert runs == ["first", "unrelated", "second"]
    shutil.rmtree(tmp_path / "first")  # as the refusal of an edited stage advises
    time.sleep(0.01)  # stage.json times further apart than the file system's resolution
    with pytest.raises(ConfigError, match=f"stage second finished in {tmp_path / 'second'} before stage first, which "
                                          r"it reads, ran again: it was made from the old output; delete"):
        pipeline.run(chain, str(tmp_path))
    assert runs == ["first", "unrelated", "second", "first"]  # "unrelated" reads nothing of "first": kept
    pipeline.run(chain, str(tmp_path), allow_config_change=True)
    shutil.rmtree(tmp_path / "second")
    pipeline.run(chain, str(tmp_path))
    assert runs == ["first", "unrelated", "second", "first", "second"]


def test_a_stage_that_refuses_its_input_leaves_no_config_behind(tmp_path, monkeypatch):
    from r1jax import sft

    def refusing(stage_config, workdir):
        raise ValueError("data.jsonl: no records in the file")

    monkeypatch.setattr(sft, "run", refusing)
    with pytest.raises(ValueError, match="no records"):
        pipeline.run(_pipeline({"name": "a", "config": SFT, "overrides": {"steps": 5}}), str(tmp_path))
    assert not (tmp_path / "a" / "config.json").exists()  # the corrected pipeline is a new run of the stage
    monkeypatch.setattr(sft, "run", lambda stage_config, workdir: {"steps": stage_config.steps})
    pipeline.run(_pipeline({"name": "a", "config": SFT, "overrides": {"steps": 7}}), str(tmp_path))


def test_a_stage_stopped_by_a_signal_ends_the_pipeline_unfinished(tmp_path, monkeypatch):
    from r1jax import sft

    runs = []

    def sft_run_preempted(stage_config, workdir):
        runs.append(workdir)
        return {"steps": 1, "stopped": True}

    monkeypatch.setattr(sft, "run", sft_run_preempted)
    config = _pipeline({"name": "a", "config": SFT}, {"name": "b", "config": SFT})
    records = pipeline.run(config, str(tmp_path))
    assert runs == [str(tmp_path / "a")] and [(r["name"], r.get("stopped")) for r in records] == [("a", True)]
    assert not (tmp_path / "a" / pipeline.DONE_FILE).exists()  # the rerun continues stage a


def test_a_signal_caught_by_a_finished_stage_stops_the_pipeline_before_the_next(tmp_path, monkeypatch):
    import signal

    from r1jax import checkpoint, sft

    runs = []

    def sft_run_signalled_in_its_last_step(stage_config, workdir):
        runs.append(workdir)
        with checkpoint.PreemptionGuard():  # the stage's own guard: it finishes its last step and returns
            os.kill(os.getpid(), signal.SIGTERM)
        return {"steps": 3}

    monkeypatch.setattr(sft, "run", sft_run_signalled_in_its_last_step)
    config = _pipeline({"name": "a", "config": SFT}, {"name": "b", "config": SFT})
    with pytest.raises(checkpoint.StoppedBySignal, match="pipeline stopped by SIGTERM before stage b"):
        pipeline.run(config, str(tmp_path))
    assert runs == [str(tmp_path / "a")] and (tmp_path / "a" / pipeline.DONE_FILE).exists()


def _correct_traces(path, pipeline_config):
    """A solution per problem of the smoke pipeline's first 16 training problems, as another model's outputs."""
    import random

    from r1jax.data import char_tokenizer, journey, tasks
    from r1jax.tokenizer import load_tokenizer

    stage = next(s for s in pipeline_config.stages if s["name"] == "rejection")
    data = pipeline.stage_config(stage, {"rl": "", "traces": ""}).data
    tokenizer = load_tokenizer(char_tokenizer.write_char_tokenizer(str(path.parent / "tokenizer")))
    train = tasks.load_task(data, tokenizer, str(path.parent / "task")).train
    with open(path, "w") as f:
        for prompt_id in range(16):
            completion = journey.completion(random.Random(0), train[prompt_id], variant="shortcut")
            f.write(json.dumps({"prompt_id": prompt_id, "completion": completion}) + "\n")
    return path


def test_the_r1_pipelines_rewards_read_the_thinking_its_prompt_opened():
    """The prompt ends with <think>: a well-formed English completion gets every reward, one that opens <think>
    again does not get more."""
    from r1jax.rewards.registry import RewardSet

    config = load_config_file("configs/r1_pipeline_tiny.py")
    rewards = [stage["overrides"]["rewards"] for stage in config.stages if stage["name"] in ("rl", "rl_again")]
    assert rewards[0] == rewards[1]
    example = {"nums": [3, 5], "target": 8}
    well_formed = " 3+5=8, that is the target.</think> <answer>3 + 5</answer>"
    reopened = "<think> 3+5=8, that is the target.</think> <answer>3 + 5</answer>"
    scores = RewardSet(rewards[0]).score_batch([well_formed, reopened], [example, example])
    assert scores.per_reward["language_consistency"] == [1.0, 1.0]  # before the fix: [0.0, 1.0]
    assert scores.total == [pytest.approx(1.2), pytest.approx(1.175)]


def test_the_r1_pipeline_feeds_each_stage_the_last_ones_output_and_resumes_at_the_unfinished_stage(
        tmp_path, monkeypatch):
    config = load_config_file("configs/r1_pipeline_tiny.py:smoke")
    config.vars.traces = str(_correct_traces(tmp_path / "traces.jsonl", config))
    validate(config, known_modes=MODES, num_devices=8)
    real_grpo_run = trainer.run
    grpo_runs = []

    def grpo_run_failing_the_second_time(stage_config, workdir):
        grpo_runs.append(workdir)
        if len(grpo_runs) == 2:
            raise RuntimeError("preempted")
        return real_grpo_run(stage_config, workdir)

    monkeypatch.setattr(trainer, "run", grpo_run_failing_the_second_time)
    with pytest.raises(RuntimeError, match="preempted"):
        pipeline.run(config, str(tmp_path))
    names = [stage["name"] for stage in config.stages]
    assert names == ["cold_start", "rl", "rejection", "sft", "rl_again"]
    finished = {name for name in names if (tmp_path / name / pipeline.DONE_FILE).exists()}
    assert finished == {"cold_start", "rl", "rejection", "sft"}
    done_times = {name: os.path.getmtime(tmp_path / name / pipeline.DONE_FILE) for name in finished}

    records = pipeline.run(config, str(tmp_path))  # the restart: only the last stage runs
    assert grpo_runs == [str(tmp_path / "rl"), str(tmp_path / "rl_again"), str(tmp_path / "rl_again")]
    assert [r["name"] for r in records] == names and [r["mode"] for r in records] == [
        "sft", "grpo", "distill", "sft", "grpo"]
    assert {name: os.path.getmtime(tmp_path / name / pipeline.DONE_FILE) for name in finished} == done_times

    def stage_config(name):
        with open(tmp_path / name / "config.json") as f:
            return json.load(f)

    assert stage_config("rl")["model"]["checkpoint"] == str(tmp_path / "cold_start" / "hf_export")
    assert stage_config("rejection")["model"]["checkpoint"] == str(tmp_path / "rl" / "hf_export")
    assert stage_config("sft")["data"]["train_file"] == str(tmp_path / "rejection" / "distill.jsonl")
    assert stage_config("rl_again")["model"]["checkpoint"] == str(tmp_path / "sft" / "hf_export")
    with open(tmp_path / "rejection" / "distill.jsonl") as f:
        assert len(f.readlines()) == 16  # the first correct trace of each of the 16 prompts
    assert (tmp_path / "rl_again" / "hf_export" / "config.json").exists()
