"""Tests for r1jax.tokenizer against tokenizers trained here and against `transformers` as the reference.

Three model directories are built once per module, laid out like Hugging Face checkpoints:
  qwen: byte-level BPE tokenizer.json, ChatML template with a default system prompt, no BOS, two stop ids.
  llama3: the same BPE with a BOS post-processor, Llama-3 header/eot template, three stop ids.
  sentencepiece: a BPE tokenizer.model with byte fallback and Gemma-style turn markers.
"""

import json
import shutil
import string
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import jinja2
import numpy as np
import pytest
import sentencepiece
import tokenizers
import transformers
from bpe import train_byte_level_bpe
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from r1jax.tokenizer import Tokenizer, load_tokenizer

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Reasoning models think step by step before they answer: 17 * 3 = 51.",
    "<think>First add the tens, then the ones.</think> The answer is 42.",
    "Ünïcödé, émojis 🙂 and 中文 should survive a round trip.",
    "def add(a, b):\n    return a + b\n",
    "Question: what is the derivative of x^2? Answer: 2x.",
    "  Leading spaces, trailing tabs\t and blank lines\n\n matter too.",
]

QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LLAMA3_SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
]
SENTENCEPIECE_TURN_MARKERS = ["<start_of_turn>", "<end_of_turn>"]

# Block tags sit on their own lines, so these render correctly only with trim_blocks and lstrip_blocks on.
QWEN_STYLE_TEMPLATE = """\
{% if messages[0]['role'] != 'system' %}
<|im_start|>system
You are a helpful assistant. Reason carefully before answering.<|im_end|>
{% endif %}
{% for message in messages %}
    {% if message['role'] == 'assistant' and not loop.last %}
        {# Earlier answers are shown without their reasoning, as R1-style models expect. #}
        {% set content = message['content'].split('</think>')[-1] | trim %}
    {% else %}
        {% set content = message['content'] %}
    {% endif %}
<|im_start|>{{ message['role'] }}
{{ content }}<|im_end|>
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}
"""

LLAMA3_STYLE_TEMPLATE = """\
{{ bos_token }}
{%- for message in messages %}
<|start_header_id|>{{ message['role'] }}<|end_header_id|>

{{ message['content'] | trim }}<|eot_id|>
{%- endfor %}
{% if add_generation_prompt %}
<|start_header_id|>assistant<|end_header_id|>

{% endif %}
"""

GEMMA_STYLE_TEMPLATE = """\
{{ bos_token }}
{%- for message in messages %}
<start_of_turn>{{ 'model' if message['role'] == 'assistant' else message['role'] }}
{{ message['content'] }}<end_of_turn>
{% endfor %}
{% if add_generation_prompt %}
<start_of_turn>model
{% endif %}
"""

# Exercises the rest of the environment transformers builds: raise_exception, loop controls, namespace, the
# non-escaping tojson, strftime_now, {% generation %}, extra variables and `documents` passed as None.
FEATURES_TEMPLATE = """\
{% set state = namespace(turns=0) %}
{% for message in messages %}
    {% if message['role'] not in ['system', 'user', 'assistant'] %}
        {{ raise_exception('unsupported role: ' + message['role']) }}
    {% endif %}
    {% if message['role'] == 'system' %}{% continue %}{% endif %}
    {% if state.turns >= max_turns %}{% break %}{% endif %}
    {% set state.turns = state.turns + 1 %}
[{{ message['role'] }}{% if message['name'] is defined %} {{ message['name'] }}{% endif %}] \
{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}{% endgeneration %}\
{% else %}{{ message['content'] }}{% endif %}

{% endfor %}
{% if tools %}
tools: {{ tools | tojson }}
{% endif %}
{% if documents is not none %}
documents: {{ documents | length }}
{% endif %}
year: {{ strftime_now('%Y') }}
{{ eos_token }}"""

SINGLE_TURN = [{"role": "user", "content": "What is 2 + 2?"}]
MULTI_TURN_WITH_SYSTEM = [
    {"role": "system", "content": "You are a terse math tutor."},
    {"role": "user", "content": "What is 17 * 3?"},
    {"role": "assistant", "content": "<think>17 * 3 = 51.</think>\n\n51"},
    {"role": "user", "content": "And 51 / 3?"},
]
MULTI_TURN_WITHOUT_SYSTEM = [
    {"role": "user", "content": "Name a prime."},
    {"role": "assistant", "content": "  7  "},
    {"role": "user", "content": "Another one, please."},
]
CONVERSATIONS = {
    "single_turn": SINGLE_TURN,
    "with_system": MULTI_TURN_WITH_SYSTEM,
    "without_system": MULTI_TURN_WITHOUT_SYSTEM,
}

# Spaces after a control token are where sentencepiece's dummy prefix would go; random text rarely hits them.
CONTROL_TOKEN_SPACING = "a<s> b</s>  c<pad>d"

# The model directories that are compared with transformers; see `model_dirs`.
MODEL_NAMES = ["qwen", "llama3", "sentencepiece"]

fast_settings = settings(max_examples=30, deadline=None)


def write_model_dir(directory: Path, json_files: dict[str, Any]) -> Path:
    directory.mkdir(parents=True)
    for name, content in json_files.items():
        (directory / name).write_text(json.dumps(content), encoding="utf-8")
    return directory


def train_sentencepiece(model_prefix: Path) -> None:
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20),
        model_prefix=str(model_prefix),
        model_type="bpe",
        vocab_size=450,
        # Identity normalization, kept whitespace and byte fallback make every text round-trip.
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        byte_fallback=True,
        character_coverage=1.0,
        user_defined_symbols=SENTENCEPIECE_TURN_MARKERS,
        pad_id=3,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    bpe = train_byte_level_bpe(CORPUS * 20, vocab_size=500, special_tokens=QWEN_SPECIAL_TOKENS + LLAMA3_SPECIAL_TOKENS)
    qwen = write_model_dir(
        root / "qwen",
        {
            "tokenizer_config.json": {
                "bos_token": None,
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
                "clean_up_tokenization_spaces": False,
                "chat_template": QWEN_STYLE_TEMPLATE,
            },
            "generation_config.json": {
                "eos_token_id": [bpe.token_to_id("<|im_end|>"), bpe.token_to_id("<|endoftext|>")]
            },
        },
    )
    bpe.save(str(qwen / "tokenizer.json"))

    llama3 = write_model_dir(
        root / "llama3",
        {
            "tokenizer_config.json": {
                "bos_token": "<|begin_of_text|>",
                "eos_token": "<|eot_id|>",
                "clean_up_tokenization_spaces": False,
                "chat_template": LLAMA3_STYLE_TEMPLATE,
            },
            "generation_config.json": {
                "eos_token_id": [bpe.token_to_id(token) for token in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")]
            },
        },
    )
    bpe.post_processor = tokenizers.processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bpe.token_to_id("<|begin_of_text|>"))]
    )
    bpe.save(str(llama3 / "tokenizer.json"))

    sentencepiece_dir = write_model_dir(
        root / "sentencepiece",
        {
            "tokenizer_config.json": {
                "tokenizer_class": "LlamaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "pad_token": "<pad>",
                "additional_special_tokens": SENTENCEPIECE_TURN_MARKERS,
                "clean_up_tokenization_spaces": False,
                "chat_template": GEMMA_STYLE_TEMPLATE,
            },
            "generation_config.json": {"eos_token_id": [2, 5]},  # </s> and <end_of_turn>
        },
    )
    train_sentencepiece(sentencepiece_dir / "tokenizer")

    bare_sentencepiece = write_model_dir(root / "bare_sentencepiece", {})
    shutil.copy(sentencepiece_dir / "tokenizer.model", bare_sentencepiece)
    return {
        "qwen": qwen,
        "llama3": llama3,
        "sentencepiece": sentencepiece_dir,
        "bare_sentencepiece": bare_sentencepiece,
    }


@pytest.fixture(scope="module")
def loaded(model_dirs: dict[str, Path]) -> dict[str, Tokenizer]:
    return {name: load_tokenizer(directory) for name, directory in model_dirs.items()}


@pytest.fixture(scope="module")
def reference(model_dirs: dict[str, Path]) -> dict[str, transformers.PreTrainedTokenizerBase]:
    return {
        name: transformers.AutoTokenizer.from_pretrained(str(model_dirs[name]), local_files_only=True)
        for name in MODEL_NAMES
    }


def sentencepiece_text() -> st.SearchStrategy[str]:
    """Text with control tokens and turn markers spliced in; never U+2581, which sentencepiece reads as a space."""
    plain = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\u2581"), max_size=20)
    markers = st.sampled_from(["<s>", "</s>", "<pad>", *SENTENCEPIECE_TURN_MARKERS])
    return st.lists(st.one_of(plain, markers), max_size=5).map("".join)


@fast_settings
@given(text=st.text(max_size=60))
def test_bpe_round_trips_any_text(loaded: dict[str, Tokenizer], text: str) -> None:
    assert loaded["qwen"].decode(loaded["qwen"].encode(text)) == text


@fast_settings
@given(text=sentencepiece_text())
@example(text=CONTROL_TOKEN_SPACING)
def test_sentencepiece_round_trips_text_with_control_tokens(loaded: dict[str, Tokenizer], text: str) -> None:
    tokenizer = loaded["sentencepiece"]
    assert tokenizer.decode(tokenizer.encode(text)) == text


@fast_settings
@given(text=st.text(max_size=60))
def test_bpe_encode_and_decode_match_transformers(
    loaded: dict[str, Tokenizer], reference: dict[str, transformers.PreTrainedTokenizerBase], text: str
) -> None:
    ids = loaded["qwen"].encode(text)
    assert ids == reference["qwen"].encode(text, add_special_tokens=False)
    assert loaded["qwen"].decode(ids) == reference["qwen"].decode(ids)


@fast_settings
@given(text=sentencepiece_text())
@example(text=CONTROL_TOKEN_SPACING)
def test_sentencepiece_encode_and_decode_match_transformers(
    loaded: dict[str, Tokenizer], reference: dict[str, transformers.PreTrainedTokenizerBase], text: str
) -> None:
    # sentencepiece puts a "▁" in front of text that starts with a space or a user-defined piece; transformers'
    # converted tokenizer does not. We follow sentencepiece there (see test_sentencepiece_text_start_...).
    assume(not text.startswith((" ", *SENTENCEPIECE_TURN_MARKERS)))
    ids = loaded["sentencepiece"].encode(text)
    assert ids == reference["sentencepiece"].encode(text, add_special_tokens=False)
    for skip_special_tokens in (False, True):
        assert loaded["sentencepiece"].decode(ids, skip_special_tokens=skip_special_tokens) == reference[
            "sentencepiece"
        ].decode(ids, skip_special_tokens=skip_special_tokens)


def test_sentencepiece_text_start_matches_raw_sentencepiece(
    model_dirs: dict[str, Path], loaded: dict[str, Tokenizer]
) -> None:
    raw = sentencepiece.SentencePieceProcessor(model_file=str(model_dirs["sentencepiece"] / "tokenizer.model"))
    text = "  two leading spaces, <start_of_turn> and a marker"
    assert loaded["sentencepiece"].encode(text) == raw.encode(text)


def test_special_tokens_in_text_encode_to_their_ids(loaded: dict[str, Tokenizer]) -> None:
    qwen = loaded["qwen"]
    assert qwen.encode("<|im_start|>user") == [qwen.token_to_id("<|im_start|>"), *qwen.encode("user")]


@pytest.mark.parametrize("name", ["llama3", "sentencepiece"])
def test_add_bos_and_add_eos_wrap_the_ids(loaded: dict[str, Tokenizer], name: str) -> None:
    tokenizer = loaded[name]
    ids = tokenizer.encode(CORPUS[1])
    assert tokenizer.encode(CORPUS[1], add_bos=True, add_eos=True) == [tokenizer.bos_id, *ids, tokenizer.eos_id]


def test_llama3_add_bos_matches_the_post_processor(
    loaded: dict[str, Tokenizer], reference: dict[str, transformers.PreTrainedTokenizerBase]
) -> None:
    text = "Think step by step."
    ids = loaded["llama3"].encode(text, add_bos=True)
    assert ids[0] == loaded["llama3"].token_to_id("<|begin_of_text|>")
    assert ids == reference["llama3"].encode(text)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_prompts_start_with_bos_where_there_is_one_and_never_twice(
    loaded: dict[str, Tokenizer], reference: dict[str, transformers.PreTrainedTokenizerBase], name: str
) -> None:
    """What SFT, GRPO, evaluation and generate feed the model; as transformers tokenizes a tokenizer.json's text."""
    tokenizer = loaded[name]
    text = "Numbers: 12 7 3. Target: 16.\n<think>"
    bos = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
    assert tokenizer.encode_prompt(text) == bos + tokenizer.encode(text)
    if name != "sentencepiece":  # transformers 5 leaves BOS out for this LlamaTokenizer; its models expect one
        assert tokenizer.encode_prompt(text) == reference[name](text)["input_ids"]
    if bos:
        rendered = tokenizer.decode([tokenizer.bos_id]) + text  # a chat template writes its own BOS
        assert tokenizer.encode_prompt(rendered) == tokenizer.encode(rendered) and tokenizer.encode(rendered)[:1] == bos


@pytest.mark.parametrize("name, config_changes, has_bos", [
    ("qwen", {"bos_token": "<|endoftext|>"}, False),  # named, but the post-processor adds none (GPT-2 style)
    ("qwen", {"bos_token": "<|endoftext|>", "add_bos_token": True}, False),  # transformers 5 ignores it here
    ("llama3", {"add_bos_token": False}, True),  # and here: the post-processor decides
    ("sentencepiece", {"add_bos_token": False}, False),
    ("sentencepiece", {}, True),
])
def test_a_prompt_has_a_bos_where_the_tokenizer_adds_one(
        model_dirs: dict[str, Path], tmp_path: Path, name: str, config_changes: dict[str, Any], has_bos: bool) -> None:
    directory = tmp_path / name
    shutil.copytree(model_dirs[name], directory)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    (directory / "tokenizer_config.json").write_text(json.dumps(config | config_changes))
    tokenizer = load_tokenizer(directory)
    text = "Numbers: 12 7 3. Target: 16."
    assert tokenizer.prompt_has_bos == has_bos
    assert tokenizer.encode_prompt(text) == [tokenizer.bos_id] * has_bos + tokenizer.encode(text)
    if name != "sentencepiece" or not has_bos:  # see test_prompts_start_with_bos_where_there_is_one_and_never_twice
        reference = transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        assert tokenizer.encode_prompt(text) == reference(text)["input_ids"]


def test_qwen_special_ids(
    loaded: dict[str, Tokenizer], reference: dict[str, transformers.PreTrainedTokenizerBase]
) -> None:
    qwen = loaded["qwen"]
    im_end, endoftext = qwen.token_to_id("<|im_end|>"), qwen.token_to_id("<|endoftext|>")
    assert qwen.bos_id is None
    assert (qwen.eos_id, qwen.eos_ids, qwen.pad_id) == (im_end, (im_end, endoftext), endoftext)
    assert (qwen.eos_id, qwen.pad_id) == (reference["qwen"].eos_token_id, reference["qwen"].pad_token_id)
    assert qwen.vocab_size == len(reference["qwen"])


def test_llama3_special_ids_pad_falls_back_to_eos(loaded: dict[str, Tokenizer]) -> None:
    llama3 = loaded["llama3"]
    eot = llama3.token_to_id("<|eot_id|>")
    assert llama3.bos_id == llama3.token_to_id("<|begin_of_text|>")
    expected_eos_ids = (eot, llama3.token_to_id("<|end_of_text|>"), llama3.token_to_id("<|eom_id|>"))
    assert llama3.eos_ids == expected_eos_ids
    assert llama3.pad_id == eot


def test_sentencepiece_special_ids_come_from_the_model_file_without_configs(loaded: dict[str, Tokenizer]) -> None:
    bare = loaded["bare_sentencepiece"]
    assert (bare.bos_id, bare.eos_id, bare.eos_ids, bare.pad_id) == (1, 2, (2,), 3)
    assert bare.special_tokens == {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    # Turn markers are user-defined pieces: special only once a config says so.
    assert bare.decode(bare.encode("<start_of_turn>hi"), skip_special_tokens=True) == "<start_of_turn>hi"


def test_sentencepiece_several_eos_ids_and_skipping_configured_specials(loaded: dict[str, Tokenizer]) -> None:
    tokenizer = loaded["sentencepiece"]
    assert tokenizer.eos_ids == (2, tokenizer.token_to_id("<end_of_turn>"))
    text = "<s><start_of_turn>user\nhi<end_of_turn></s>"
    ids = tokenizer.encode(text)
    assert ids[:2] == [tokenizer.bos_id, tokenizer.token_to_id("<start_of_turn>")]
    assert ids[-1] == tokenizer.eos_id
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(ids, skip_special_tokens=True) == "user\nhi"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_encode_batch_matches_encode(loaded: dict[str, Tokenizer], name: str) -> None:
    tokenizer = loaded[name]
    add_bos = tokenizer.bos_id is not None
    expected = [tokenizer.encode(text, add_bos=add_bos, add_eos=True) for text in CORPUS]
    assert tokenizer.encode_batch(CORPUS, add_bos=add_bos, add_eos=True) == expected


@pytest.mark.parametrize("as_array", [np.asarray, jnp.asarray], ids=["numpy", "jax"])
@pytest.mark.parametrize("name", ["qwen", "sentencepiece"])
def test_decode_accepts_arrays(loaded: dict[str, Tokenizer], name: str, as_array: Callable[[list[int]], Any]) -> None:
    tokenizer = loaded[name]
    assert tokenizer.decode(as_array(tokenizer.encode(CORPUS[0]))) == CORPUS[0]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_token_to_id_and_id_to_token(loaded: dict[str, Tokenizer], name: str) -> None:
    tokenizer = loaded[name]
    for token_id in (0, tokenizer.eos_id, tokenizer.vocab_size - 1):
        assert tokenizer.token_to_id(tokenizer.id_to_token(token_id)) == token_id
    with pytest.raises(KeyError, match="not-a-token"):
        tokenizer.token_to_id("not-a-token")
    with pytest.raises(IndexError, match=str(tokenizer.vocab_size)):
        tokenizer.id_to_token(tokenizer.vocab_size)


def test_loading_the_model_file_reads_the_configs_next_to_it(
    model_dirs: dict[str, Path], loaded: dict[str, Tokenizer]
) -> None:
    for name, file_name in (("qwen", "tokenizer.json"), ("sentencepiece", "tokenizer.model")):
        from_file = load_tokenizer(model_dirs[name] / file_name)
        assert from_file.eos_ids == loaded[name].eos_ids
        assert from_file.encode(CORPUS[2]) == loaded[name].encode(CORPUS[2])


@pytest.mark.parametrize("add_generation_prompt", [False, True])
@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=list(CONVERSATIONS))
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_chat_template_matches_transformers(
    loaded: dict[str, Tokenizer],
    reference: dict[str, transformers.PreTrainedTokenizerBase],
    name: str,
    conversation: str,
    add_generation_prompt: bool,
) -> None:
    messages = CONVERSATIONS[conversation]
    text = loaded[name].apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
    assert text == reference[name].apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=False
    )
    ids = loaded[name].apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True)
    assert ids == reference[name].apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=False
    )


def test_qwen_chat_renders_default_system_prompt_and_drops_old_reasoning(loaded: dict[str, Tokenizer]) -> None:
    text = loaded["qwen"].apply_chat_template(MULTI_TURN_WITH_SYSTEM[1:], add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant. Reason carefully before answering.<|im_end|>\n"
        "<|im_start|>user\nWhat is 17 * 3?<|im_end|>\n"
        "<|im_start|>assistant\n51<|im_end|>\n"
        "<|im_start|>user\nAnd 51 / 3?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_llama3_chat_starts_with_bos_and_ends_turns_with_eot(loaded: dict[str, Tokenizer]) -> None:
    llama3 = loaded["llama3"]
    ids = llama3.apply_chat_template(SINGLE_TURN, tokenize=True)
    assert ids[0] == llama3.bos_id
    assert ids[-1] == llama3.eos_id == llama3.token_to_id("<|eot_id|>")
    assert llama3.apply_chat_template(SINGLE_TURN, add_generation_prompt=True).endswith(
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


@pytest.fixture(scope="module")
def features_dir(model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("features")
    shutil.copy(model_dirs["qwen"] / "tokenizer.json", directory)
    config = {"eos_token": "<|endoftext|>", "clean_up_tokenization_spaces": False, "chat_template": FEATURES_TEMPLATE}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


def test_template_environment_features_match_transformers(features_dir: Path) -> None:
    messages = [
        {"role": "system", "content": "skipped by continue"},
        {"role": "user", "content": "hi", "name": None},  # None-valued keys are dropped, so `name` is undefined
        {"role": "assistant", "content": "hello", "name": "bot"},
        {"role": "user", "content": "cut off by break"},
    ]
    tools = [{"name": "café", "description": "returns <html> & 'quotes'"}]
    text = load_tokenizer(features_dir).apply_chat_template(messages, tools=tools, max_turns=2)
    reference = transformers.AutoTokenizer.from_pretrained(str(features_dir), local_files_only=True)
    assert text == reference.apply_chat_template(messages, tools=tools, max_turns=2, tokenize=False)
    assert text == (
        "[user] hi\n"
        "[assistant bot] hello\n"
        f"tools: {json.dumps(tools, ensure_ascii=False)}\n"
        f"year: {datetime.now().year}\n"
        "<|endoftext|>"
    )


def test_reasoning_reaches_templates_under_every_name_as_in_transformers(features_dir: Path, tmp_path: Path) -> None:
    shutil.copy(features_dir / "tokenizer.json", tmp_path)
    template = ("{% for m in messages %}{{ m.role }} [{{ m.reasoning_content }}|{{ m.thinking }}] {{ m.content }}\n"
                "{% endfor %}")
    config = {"eos_token": "<|endoftext|>", "chat_template": template}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    messages = [{"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4", "reasoning": "two plus two"},
                {"role": "assistant", "content": "5", "thinking": "a", "reasoning_content": "b"},
                {"role": "assistant", "content": "6", "reasoning_content": None, "thinking": "c"}]
    text = load_tokenizer(tmp_path).apply_chat_template(messages)
    reference = transformers.AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert text == reference.apply_chat_template(messages, tokenize=False)
    assert "assistant [two plus two|two plus two] 4" in text


def test_raise_exception_in_template_raises_template_error(features_dir: Path) -> None:
    with pytest.raises(jinja2.TemplateError, match="unsupported role: tool"):
        load_tokenizer(features_dir).apply_chat_template([{"role": "tool", "content": "{}"}], max_turns=1)


def test_named_templates_and_chat_template_file(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    shutil.copy(model_dirs["qwen"] / "tokenizer.json", tmp_path)
    templates = [
        {"name": "default", "template": "plain {{ messages | length }}"},
        {"name": "tool_use", "template": "with {{ tools | length }} tools"},
    ]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": templates}))
    tools = [{"name": "calculator"}]
    assert load_tokenizer(tmp_path).apply_chat_template(SINGLE_TURN) == "plain 1"
    assert load_tokenizer(tmp_path).apply_chat_template(SINGLE_TURN, tools=tools) == "with 1 tools"
    reference = transformers.AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert reference.apply_chat_template(SINGLE_TURN, tools=tools, tokenize=False) == "with 1 tools"

    (tmp_path / "chat_template.jinja").write_text("from the file")
    assert load_tokenizer(tmp_path).apply_chat_template(SINGLE_TURN, tools=tools) == "from the file"


@pytest.fixture
def qwen_copy(model_dirs: dict[str, Path], tmp_path: Path) -> Path:
    """A writable copy of the qwen directory, for tests that break one of its files."""
    directory = tmp_path / "qwen"
    shutil.copytree(model_dirs["qwen"], directory)
    return directory


def test_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_tokenizer(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json"):
        load_tokenizer(tmp_path)


def test_missing_chat_template_names_file_and_key(qwen_copy: Path) -> None:
    config_file = qwen_copy / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    del config["chat_template"]
    config_file.write_text(json.dumps(config))
    tokenizer = load_tokenizer(qwen_copy)
    assert tokenizer.encode("still encodes")
    with pytest.raises(ValueError, match=r"'chat_template' key in tokenizer_config\.json"):
        tokenizer.apply_chat_template(SINGLE_TURN)


def test_tokens_added_beyond_a_sentencepiece_model_are_refused(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    shutil.copy(model_dirs["sentencepiece"] / "tokenizer.model", tmp_path)
    pieces = load_tokenizer(tmp_path).vocab_size
    added = {"content": "<|im_start|>", "special": True, "lstrip": False, "rstrip": False, "normalized": False,
             "single_word": False}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": {str(pieces): added}}))
    with pytest.raises(ValueError, match=rf"adds tokens beyond the sentencepiece model's {pieces} pieces"):
        load_tokenizer(tmp_path)


def test_malformed_files_are_named(qwen_copy: Path) -> None:
    (qwen_copy / "generation_config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"generation_config\.json"):
        load_tokenizer(qwen_copy)
    (qwen_copy / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError, match=r"tokenizer\.json"):
        load_tokenizer(qwen_copy)
    (qwen_copy / "tokenizer.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"tokenizer\.model"):
        load_tokenizer(qwen_copy / "tokenizer.model")


def test_special_token_outside_vocabulary_is_named(qwen_copy: Path) -> None:
    config_file = qwen_copy / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["eos_token"] = "<|missing|>"
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"eos_token '<\|missing\|>'"):
        load_tokenizer(qwen_copy)


def test_special_tokens_map_is_read_only_for_configs_without_added_tokens_decoder(qwen_copy: Path) -> None:
    special_tokens_map = {"eos_token": "<|endoftext|>", "unk_token": {"content": "<|im_start|>", "special": True}}
    (qwen_copy / "special_tokens_map.json").write_text(json.dumps(special_tokens_map))
    legacy = load_tokenizer(qwen_copy)
    reference = transformers.AutoTokenizer.from_pretrained(str(qwen_copy), local_files_only=True)
    assert legacy.special_tokens == reference.special_tokens_map
    assert legacy.eos_id == reference.eos_token_id == legacy.token_to_id("<|endoftext|>")

    config_file = qwen_copy / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["added_tokens_decoder"] = {"2": {"content": "<|im_end|>", "special": True}}
    config_file.write_text(json.dumps(config))
    modern = load_tokenizer(qwen_copy)
    reference = transformers.AutoTokenizer.from_pretrained(str(qwen_copy), local_files_only=True)
    assert (
        modern.special_tokens
        == reference.special_tokens_map
        == {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    )


def test_model_specific_tokens_reach_templates_like_in_transformers(qwen_copy: Path) -> None:
    config_file = qwen_copy / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["answer_token"] = "<|endoftext|>"
    config["extra_special_tokens"] = {"turn_token": "<|im_start|>"}
    config["chat_template"] = "{{ turn_token }}{{ messages[0]['content'] }}{{ answer_token }}"
    config_file.write_text(json.dumps(config))
    reference = transformers.AutoTokenizer.from_pretrained(str(qwen_copy), local_files_only=True)
    text = load_tokenizer(qwen_copy).apply_chat_template(SINGLE_TURN)
    assert text == reference.apply_chat_template(SINGLE_TURN, tokenize=False)
    assert text == "<|im_start|>What is 2 + 2?<|endoftext|>"


def test_explicit_null_removes_a_token_the_model_file_defines(model_dirs: dict[str, Path], tmp_path: Path) -> None:
    shutil.copy(model_dirs["bare_sentencepiece"] / "tokenizer.model", tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"pad_token": None}))
    tokenizer = load_tokenizer(tmp_path)
    assert "pad_token" not in tokenizer.special_tokens
    assert tokenizer.pad_id == tokenizer.eos_id == 2


def test_add_bos_without_bos_token_raises(loaded: dict[str, Tokenizer]) -> None:
    with pytest.raises(ValueError, match="bos_token"):
        loaded["qwen"].encode("hi", add_bos=True)


def test_save_copies_a_tokenizer_that_loads_identically(tmp_path):
    from r1jax.data.char_tokenizer import write_char_tokenizer

    original = load_tokenizer(write_char_tokenizer(str(tmp_path / "char")))
    original.save(tmp_path / "copy")
    copy = load_tokenizer(tmp_path / "copy")
    text = "Numbers: 3 5 2. Target: 16.\n<think>3+5=8</think>\n<answer>(3+5)*2</answer>"
    assert copy.encode(text) == original.encode(text) and len(original.encode(text)) < len(text)
    assert (copy.eos_ids, copy.pad_id, copy.bos_id) == (original.eos_ids, original.pad_id, None)
    assert copy.decode(copy.encode(text)) == text


@pytest.mark.parametrize("name, model_file", [("sentencepiece", "tokenizer.model"), ("qwen", "tokenizer.json")])
def test_a_tokenizer_read_from_a_renamed_model_file_saves_under_the_name_loaders_read(
        model_dirs: dict[str, Path], tmp_path, name, model_file):
    renamed = tmp_path / "source" / ("sp32k.model" if model_file == "tokenizer.model" else "my_tokenizer.json")
    renamed.parent.mkdir()
    shutil.copy(model_dirs[name] / model_file, renamed)
    original = load_tokenizer(renamed)
    original.save(tmp_path / "export")
    text = "the quick brown fox"
    assert load_tokenizer(tmp_path / "export").encode(text) == original.encode(text)
    reference = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "export"), local_files_only=True)
    assert reference.decode(original.encode(text)).strip() == text


def test_char_tokenizer_reads_other_characters_as_unk_and_keeps_ascii_ids(tmp_path):
    from r1jax.data import char_tokenizer

    tokenizer = load_tokenizer(char_tokenizer.write_char_tokenizer(str(tmp_path / "char")))
    unk = char_tokenizer.vocab_size() - 1
    assert tokenizer.vocab_size == char_tokenizer.vocab_size()
    # The ids of earlier char tokenizers (specials, then string.printable without \t\r\x0b\x0c) hold.
    assert tokenizer.encode("a0 ") == [6 + string.printable.index(c) for c in "a0 "]
    ids = tokenizer.encode("3\u00d74 \u2212 \u03c0")
    assert ids == [tokenizer.encode("3")[0], unk, tokenizer.encode("4")[0], tokenizer.encode(" ")[0], unk,
                   tokenizer.encode(" ")[0], unk]
    assert tokenizer.pad_id not in ids
    assert tokenizer.decode(ids) == "3<unk>4 <unk> <unk>"


def test_a_completion_keeps_its_special_tag_tokens_and_drops_only_a_final_eos(tmp_path):
    from r1jax.data.char_tokenizer import write_char_tokenizer

    tokenizer = load_tokenizer(write_char_tokenizer(str(tmp_path / "char")))
    [eos] = tokenizer.eos_ids
    tags = tokenizer.encode("<think>a</think>")
    assert set(tags) & tokenizer.special_token_ids  # the tags are special tokens here
    assert tokenizer.decode_completion(tags + [eos], [eos]) == "<think>a</think>"
    assert tokenizer.decode_completion(np.array(tags), [eos]) == "<think>a</think>"
    assert tokenizer.decode_completion([eos] + tags, [eos]) == tokenizer.decode([eos] + tags)  # not final: kept
    assert tokenizer.decode_completion(tags + [eos], []) == tokenizer.decode(tags + [eos])


def test_sft_parts_of_a_sentencepiece_conversation_join_into_its_whole_encoding(loaded: dict[str, Tokenizer]) -> None:
    """Later parts continue the text: no leading-space piece that the whole conversation (what the model reads
    at inference, then generates after) does not have."""
    from r1jax import sft

    tokenizer = loaded["sentencepiece"]
    messages = [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "the answer"},
                {"role": "user", "content": "more"}, {"role": "assistant", "content": "done"}]
    parts = sft.encode_record({"messages": messages}, tokenizer)
    assert [t for part in parts for t in part] == tokenizer.encode(tokenizer.apply_chat_template(messages))
    prompt, completion = sft.encode_record({"prompt": "Q: 2+2=", "completion": "4"}, tokenizer)
    assert prompt + completion[:-1] == tokenizer.encode_prompt("Q: 2+2=4") and completion[-1] == tokenizer.eos_id
    for name in ("qwen", "llama3"):  # byte-level BPE: a continuation is encoded like any text
        assert loaded[name].encode_continuation(" the answer") == loaded[name].encode(" the answer")
    [(pair_prompt, pair_completion)] = sft.encode_pairs([("Q: 2+2=", "4")], tokenizer)  # pretraining's pairs
    assert pair_prompt + pair_completion == tokenizer.encode_prompt("Q: 2+2=4")


def test_pretraining_pairs_read_as_rl_prompts_and_end_in_the_tokenizers_eos(loaded: dict[str, Tokenizer]) -> None:
    """The synthetic traces end in the char tokenizer's EOS text; with Llama 3's tokenizer that is its EOS id, not
    the text spelled out, and the prompt starts with BOS as the RL prompts do."""
    from r1jax import sft
    from r1jax.data.char_tokenizer import EOS

    for name in ("llama3", "qwen", "sentencepiece"):
        tokenizer = loaded[name]
        [(prompt, completion)] = sft.encode_pairs([("Numbers: 3 5", f" 3+5=8</think>{EOS}")], tokenizer)
        assert prompt == tokenizer.encode_prompt("Numbers: 3 5")
        assert completion == tokenizer.encode_continuation(" 3+5=8</think>") + [tokenizer.eos_id]
    assert loaded["llama3"].encode_prompt("a")[0] == loaded["llama3"].bos_id


def _metaspace_bpe(layout: str) -> tokenizers.Tokenizer:
    """A Llama-2/Mistral-style tokenizer.json: "▁" for spaces and before the text, by a Prepend normalizer
    (the older files) or by the Metaspace pre-tokenizer's 'first' scheme (the newer ones)."""
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>", *byte_tokens],
                                             show_progress=False)
    bpe.train_from_iterator(CORPUS * 4, trainer)
    if layout == "prepend":
        bpe.normalizer = tokenizers.normalizers.Sequence([tokenizers.normalizers.Prepend("▁"),
                                                          tokenizers.normalizers.Replace(" ", "▁")])
        bpe.pre_tokenizer = None
    else:
        bpe.pre_tokenizer = tokenizers.pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    bpe.decoder = tokenizers.decoders.Sequence([tokenizers.decoders.Replace("▁", " "), tokenizers.decoders.ByteFallback(),
                                                tokenizers.decoders.Fuse(), tokenizers.decoders.Strip(" ", 1, 0)])
    return bpe


@pytest.mark.parametrize("layout", ["prepend", "metaspace_first"])
def test_a_continuation_of_a_llama2_style_tokenizer_json_has_no_leading_space_piece(layout, tmp_path):
    """SFT's completion tokens equal the tail of the whole text's encoding (transformers'), as the model reads
    them at inference: not a "▁" first, which would teach it to start every answer with a space."""
    directory = tmp_path / layout
    directory.mkdir()
    _metaspace_bpe(layout).save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    tokenizer = load_tokenizer(directory)
    reference = transformers.PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))
    for prompt, completion in [("the quick fox\nAnswer:", " 42"), ("jumps over the <think>", "12 brown dogs"),
                               ("lazy dog\n", "The answer"), ("quick", "\nbrown fox")]:
        whole = reference(prompt + completion, add_special_tokens=False)["input_ids"]
        prompt_ids = tokenizer.encode(prompt)
        assert whole[:len(prompt_ids)] == prompt_ids
        assert tokenizer.encode_continuation(completion) == whole[len(prompt_ids):], (prompt, completion)
    assert tokenizer.encode("brown fox") == reference("brown fox", add_special_tokens=False)["input_ids"]


def test_budget_forcing_splices_its_texts_without_a_leading_space_piece(loaded: dict[str, Tokenizer]) -> None:
    from r1jax import scaling

    tokenizer = loaded["sentencepiece"]
    prompt = tokenizer.encode_prompt("hello there<think>")
    replies = iter([[tokenizer.encode_continuation("the answer")], [tokenizer.encode_continuation("more")]])
    [result] = scaling.budget_forced_generate(lambda prompts, budget, stops: next(replies), tokenizer, [prompt],
                                              max_thinking_tokens=40, max_answer_tokens=8)
    assert tokenizer.decode(prompt + result.tokens, skip_special_tokens=True) == (
        "hello there<think>the answer</think>\n<answer>more")
