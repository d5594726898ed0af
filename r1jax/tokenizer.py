"""One tokenizer interface over sentencepiece `.model` files and Hugging Face `tokenizer.json` files.

`load_tokenizer` reads a model directory laid out the way Hugging Face checkpoints ship it: the model file plus the
optional tokenizer_config.json, special_tokens_map.json, generation_config.json and chat_template.jinja next to it.
Those supply the special tokens (BOS, EOS, pad), the stop ids a generation loop must honour, and the chat template.

Chat templates are rendered with the same Jinja environment `transformers` builds for `apply_chat_template`, so the
prompts we train and sample with are byte-for-byte the ones the model's authors used. `transformers` itself is never
imported here; the tests check that both agree.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, NoReturn, Protocol, overload

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox
import sentencepiece
import tokenizers
from sentencepiece import sentencepiece_model_pb2

HF_TOKENIZER_FILE = "tokenizer.json"
SENTENCEPIECE_FILE = "tokenizer.model"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
GENERATION_CONFIG_FILE = "generation_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"

Message = Mapping[str, Any]


class _Backend(Protocol):
    """What `Tokenizer` needs from a tokenizer library. Encoding never adds BOS/EOS; `Tokenizer` does that."""

    vocab_size: int
    # Ids the library itself treats as special: sentencepiece control pieces, `tokenizers` added tokens marked special.
    special_ids: frozenset[int]
    # Special tokens the model file names itself (only sentencepiece does); the JSON configs override them.
    default_special_tokens: dict[str, str]

    # `continuation`: the text follows earlier text (no sentencepiece leading-space prefix).
    def encode(self, text: str, continuation: bool = False) -> list[int]: ...

    def encode_batch(self, texts: Sequence[str], continuation: bool = False) -> list[list[int]]: ...

    def decode(self, ids: list[int]) -> str: ...

    # Whether transformers' tokenizer(text) starts with `bos_id`, given tokenizer_config.json's add_bos_token.
    def adds_bos(self, bos_id: int, add_bos_token: bool | None) -> bool: ...

    def token_to_id(self, token: str) -> int | None: ...

    def id_to_token(self, token_id: int) -> str: ...


class _HuggingFaceBackend:
    def __init__(self, tokenizer_file: Path) -> None:
        try:
            self._tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_file))
        except Exception as error:  # `tokenizers` raises a bare Exception for unreadable or malformed files
            raise ValueError(f"{tokenizer_file} is not a valid {HF_TOKENIZER_FILE}: {error}") from error
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        self.special_ids = frozenset(
            token_id for token_id, token in self._tokenizer.get_added_tokens_decoder().items() if token.special
        )
        self.default_special_tokens: dict[str, str] = {}
        self._continuation_tokenizer = _without_prefix_space(self._tokenizer)

    def encode(self, text: str, continuation: bool = False) -> list[int]:
        # add_special_tokens=False skips the post-processor (e.g. Llama 3's BOS template); `Tokenizer` adds BOS/EOS.
        tokenizer = self._continuation_tokenizer if continuation else self._tokenizer
        return tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], continuation: bool = False) -> list[list[int]]:
        tokenizer = self._continuation_tokenizer if continuation else self._tokenizer
        return [encoding.ids for encoding in tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=False)

    def adds_bos(self, bos_id: int, add_bos_token: bool | None) -> bool:
        """The file's post-processor decides (Llama 3's adds BOS, GPT-2's does not); transformers 5 ignores
        add_bos_token for a tokenizer.json."""
        return self._tokenizer.encode("a", add_special_tokens=True).ids[:1] == [bos_id] != self.encode("a")[:1]

    def token_to_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    def id_to_token(self, token_id: int) -> str:
        return self._tokenizer.id_to_token(token_id)


def _without_prefix_space(tokenizer: tokenizers.Tokenizer) -> tokenizers.Tokenizer:
    """`tokenizer` without the "▁" that Llama-2/Mistral-style files put before a text (a Prepend normalizer, or a
    Metaspace pre-tokenizer's prepend scheme): a continuation does not start a text. `tokenizer` itself where it
    has no such step (byte-level BPE: Qwen, Llama 3). Text after a special token inside a continuation gets no
    "▁" either, where a Prepend normalizer's whole-text encoding would give it one."""
    spec = json.loads(tokenizer.to_str())

    def without_prefix(step: dict | None) -> dict | None:
        if not isinstance(step, dict) or step.get("type") == "Prepend":
            return None
        if step.get("type") == "Metaspace":
            return {**step, "prepend_scheme": "never", "add_prefix_space": False}
        if step.get("type") == "Sequence":
            key = "normalizers" if "normalizers" in step else "pretokenizers"
            return {**step, key: [kept for kept in map(without_prefix, step[key]) if kept is not None]}
        return step

    changed = {key: without_prefix(spec[key]) for key in ("normalizer", "pre_tokenizer")}
    if all(changed[key] == spec[key] for key in changed):
        return tokenizer
    return tokenizers.Tokenizer.from_str(json.dumps({**spec, **changed}))


class _SentencePieceBackend:
    """sentencepiece, plus the one thing it lacks: recognising control tokens (`<s>`, `</s>`) written in the text.

    Rendered chat templates contain them as text (`{{ bos_token }}`). We split them out, and encode the text after one
    as a continuation, without sentencepiece's leading-space "dummy prefix", which is what sentencepiece itself does
    after user-defined symbols and what `transformers` does after special tokens. `decode` mirrors this, so text
    containing control tokens round-trips exactly.
    """

    def __init__(self, model_file: Path) -> None:
        try:
            self._processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        except (OSError, RuntimeError) as error:
            raise ValueError(f"{model_file} is not a valid sentencepiece model: {error}") from error
        self._continuation_processor = _without_dummy_prefix(self._processor)
        self.vocab_size = self._processor.get_piece_size()
        self.special_ids = frozenset(i for i in range(self.vocab_size) if self._processor.is_control(i))
        # Longest first, so a control piece that contains another is matched whole.
        control_pieces = sorted(map(self._processor.id_to_piece, self.special_ids), key=len, reverse=True)
        self._control_piece_pattern = (
            re.compile("(" + "|".join(map(re.escape, control_pieces)) + ")") if control_pieces else None
        )
        model_special_ids = {
            "bos_token": self._processor.bos_id(),
            "eos_token": self._processor.eos_id(),
            "unk_token": self._processor.unk_id(),
            "pad_token": self._processor.pad_id(),
        }
        self.default_special_tokens = {
            name: self._processor.id_to_piece(token_id) for name, token_id in model_special_ids.items() if token_id >= 0
        }

    def encode(self, text: str, continuation: bool = False) -> list[int]:
        # The pattern has one group, so split() alternates: text, control piece, text, control piece, ..., text.
        parts = self._control_piece_pattern.split(text) if self._control_piece_pattern else [text]
        ids = (self._continuation_processor if continuation else self._processor).encode(parts[0])
        for control_piece, following_text in zip(parts[1::2], parts[2::2], strict=True):
            ids.append(self._processor.piece_to_id(control_piece))
            ids.extend(self._continuation_processor.encode(following_text))
        return ids

    def encode_batch(self, texts: Sequence[str], continuation: bool = False) -> list[list[int]]:
        return [self.encode(text, continuation) for text in texts]

    def adds_bos(self, bos_id: int, add_bos_token: bool | None) -> bool:
        return add_bos_token is not False  # transformers' LlamaTokenizer: add_bos_token, true by default

    def decode(self, ids: list[int]) -> str:
        texts: list[str] = []
        for is_control, run in itertools.groupby(ids, key=self.special_ids.__contains__):
            if is_control:
                texts.extend(map(self._processor.id_to_piece, run))
            else:
                processor = self._continuation_processor if texts else self._processor
                texts.append(processor.decode(list(run)))
        return "".join(texts)

    def token_to_id(self, token: str) -> int | None:
        token_id = self._processor.piece_to_id(token)
        # Unknown pieces map to the unk id rather than failing.
        return token_id if self._processor.id_to_piece(token_id) == token else None

    def id_to_token(self, token_id: int) -> str:
        return self._processor.id_to_piece(token_id)


def _without_dummy_prefix(processor: sentencepiece.SentencePieceProcessor) -> sentencepiece.SentencePieceProcessor:
    """The same model, but without the leading space sentencepiece adds to (and strips from) the start of a text."""
    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(processor.serialized_model_proto())
    if not model.normalizer_spec.add_dummy_prefix:
        return processor
    model.normalizer_spec.add_dummy_prefix = False
    return sentencepiece.SentencePieceProcessor(model_proto=model.SerializeToString())


class Tokenizer:
    """Text <-> token ids for one model, with its special tokens and chat template. Build it with `load_tokenizer`.

    Attributes:
      source: the path it was loaded from.
      vocab_size: number of ids the tokenizer can produce, added tokens included (the model's embedding table may be
        larger).
      special_tokens: the `<name>_token` entries of the configs (bos_token, eos_token, ...), as chat templates see them.
      special_token_ids: ids that `decode(..., skip_special_tokens=True)` drops.
      bos_id: None when the model has no BOS token (e.g. Qwen).
      prompt_has_bos: whether `encode_prompt` puts BOS first, as transformers 5 does: for a tokenizer.json, whether
        its post-processor adds it (Llama 3's does; a GPT-2-style one naming a bos_token does not); for sentencepiece,
        tokenizer_config.json's `add_bos_token` (default true).
      eos_ids: every id that ends a generation: the tokenizer's EOS first, then generation_config.json's `eos_token_id`.
      eos_id: `eos_ids[0]`, the id `encode(..., add_eos=True)` appends; None when there is none.
      pad_id: the configured pad token, else generation_config.json's `pad_token_id`, else `eos_id`.
      chat_templates: template name -> Jinja source; "default" is the one `apply_chat_template` uses.
    """

    def __init__(
        self,
        backend: _Backend,
        *,
        source: Path,
        special_tokens: Mapping[str, str],
        extra_special_tokens: Iterable[str],
        generation_config: Mapping[str, Any],
        chat_templates: Mapping[str, str],
        add_bos_token: bool | None = None,
    ) -> None:
        self._backend = backend
        self.source = source
        self.vocab_size = backend.vocab_size
        self.special_tokens = dict(special_tokens)
        self.chat_templates = dict(chat_templates)
        self.special_token_ids = backend.special_ids | {
            token_id
            for token in itertools.chain(self.special_tokens.values(), extra_special_tokens)
            if (token_id := backend.token_to_id(token)) is not None
        }
        self.bos_id = self._special_token_id("bos_token")
        self.prompt_has_bos = self.bos_id is not None and backend.adds_bos(self.bos_id, add_bos_token)
        eos_id = self._special_token_id("eos_token")
        generation_eos_ids = generation_config.get("eos_token_id")
        if isinstance(generation_eos_ids, int):
            generation_eos_ids = [generation_eos_ids]
        self.eos_ids: tuple[int, ...] = tuple(
            dict.fromkeys(([] if eos_id is None else [eos_id]) + list(generation_eos_ids or []))
        )
        self.eos_id = self.eos_ids[0] if self.eos_ids else None
        pad_id = self._special_token_id("pad_token")
        if pad_id is None:
            pad_id = generation_config.get("pad_token_id")
        self.pad_id: int | None = self.eos_id if pad_id is None else pad_id

    def _special_token_id(self, name: str) -> int | None:
        if name not in self.special_tokens:
            return None
        token = self.special_tokens[name]
        token_id = self._backend.token_to_id(token)
        if token_id is None:
            raise ValueError(
                f"{self.source}: {name} {token!r} (from {TOKENIZER_CONFIG_FILE}, {SPECIAL_TOKENS_MAP_FILE} or the "
                "model file) is not in the vocabulary"
            )
        return token_id

    def __repr__(self) -> str:
        return (
            f"Tokenizer({str(self.source)!r}, vocab_size={self.vocab_size}, bos_id={self.bos_id}, "
            f"eos_ids={self.eos_ids}, pad_id={self.pad_id})"
        )

    def encode(self, text: str, *, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Token ids of `text`. Special tokens written in the text (e.g. `<|im_start|>`) become their ids."""
        return self._add_bos_eos(self._backend.encode(text), add_bos, add_eos)

    def encode_continuation(self, text: str) -> list[int]:
        """Token ids of `text` written right after earlier text, as a model generates it: without the leading
        space sentencepiece adds to (the start of) a text. What SFT trains a completion or a later turn on."""
        return self._backend.encode(text, continuation=True)

    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of a prompt as the model reads it (and as transformers' `tokenizer(text)` gives them): BOS
        first where the tokenizer adds one (`prompt_has_bos`), unless the text already starts with it (a rendered
        chat template)."""
        ids = self._backend.encode(text)
        return [self.bos_id, *ids] if self.prompt_has_bos and ids[:1] != [self.bos_id] else ids

    def encode_batch(self, texts: Sequence[str], *, add_bos: bool = False, add_eos: bool = False,
                     continuation: bool = False) -> list[list[int]]:
        """`encode` (or with `continuation`, `encode_continuation`) of each text."""
        return [self._add_bos_eos(ids, add_bos, add_eos) for ids in self._backend.encode_batch(texts, continuation)]

    def _add_bos_eos(self, ids: list[int], add_bos: bool, add_eos: bool) -> list[int]:
        if add_bos:
            if self.bos_id is None:
                raise ValueError(f"add_bos=True, but {self.source} defines no bos_token")
            ids = [self.bos_id, *ids]
        if add_eos:
            if self.eos_id is None:
                raise ValueError(f"add_eos=True, but {self.source} defines no eos_token")
            ids = [*ids, self.eos_id]
        return ids

    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = False) -> str:
        """Text of `ids` (any iterable of ints, numpy and JAX arrays included)."""
        # Arrays convert in one call: one device-to-host copy for JAX instead of one per element.
        ids = ids.tolist() if hasattr(ids, "tolist") else [int(token_id) for token_id in ids]
        if skip_special_tokens:
            ids = [token_id for token_id in ids if token_id not in self.special_token_ids]
        return self._backend.decode(ids)

    def decode_completion(self, ids: Iterable[int], eos_ids: Iterable[int]) -> str:
        """Text of a generated completion: special tokens kept (tags such as <think> may be special tokens),
        only a final EOS (one of `eos_ids`) dropped."""
        ids = ids.tolist() if hasattr(ids, "tolist") else [int(token_id) for token_id in ids]
        return self.decode(ids[:-1] if ids and ids[-1] in set(eos_ids) else ids)

    def token_to_id(self, token: str) -> int:
        token_id = self._backend.token_to_id(token)
        if token_id is None:
            raise KeyError(f"{token!r} is not in the vocabulary of {self.source}")
        return token_id

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Copies the files this tokenizer was read from into `directory` (e.g. beside exported weights), a model
        file read under another name (`sp32k.model`) under the name a loader looks for (`tokenizer.model`)."""
        source_dir = self.source if self.source.is_dir() else self.source.parent
        if self.source.is_dir():
            copies = {name: name for name in (HF_TOKENIZER_FILE, SENTENCEPIECE_FILE)}
        else:
            copies = {self.source.name: HF_TOKENIZER_FILE if self.source.suffix == ".json" else SENTENCEPIECE_FILE}
        copies |= {name: name for name in (TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE, GENERATION_CONFIG_FILE,
                                           CHAT_TEMPLATE_FILE)}
        os.makedirs(directory, exist_ok=True)
        for name, saved_name in copies.items():
            if (source_dir / name).is_file():
                shutil.copyfile(source_dir / name, Path(directory) / saved_name)

    def id_to_token(self, token_id: int) -> str:
        if not 0 <= token_id < self.vocab_size:
            raise IndexError(f"token id {token_id} is outside the vocabulary [0, {self.vocab_size}) of {self.source}")
        return self._backend.id_to_token(token_id)

    @overload
    def apply_chat_template(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = False,
        tokenize: Literal[False] = False,
        **extra_vars: Any,
    ) -> str: ...

    @overload
    def apply_chat_template(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = False,
        tokenize: Literal[True],
        **extra_vars: Any,
    ) -> list[int]: ...

    def apply_chat_template(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = False,
        tokenize: bool = False,
        **extra_vars: Any,
    ) -> str | list[int]:
        """Render a conversation with the model's chat template, as `transformers`' `apply_chat_template` does.

        `extra_vars` become template variables next to `messages`, `add_generation_prompt` and the special tokens
        (`bos_token`, ...), which they override: e.g. `tools=[...]` (JSON schemas), or Qwen3's `enable_thinking=False`.
        With `tokenize=True` the text is encoded without adding BOS/EOS, because templates write those themselves.
        """
        template = _compile_chat_template(self._chat_template(wants_tools=extra_vars.get("tools") is not None))
        # Like transformers, drop None-valued keys: API replies carry `content=None`, which templates print as "None".
        conversation = [_with_reasoning_aliases({key: value for key, value in message.items() if value is not None})
                        for message in messages]
        # transformers always passes `tools` and `documents`, so templates that test `tools is not none` see None.
        variables = {"tools": None, "documents": None, **self.special_tokens, **extra_vars}
        text = template.render(**variables, messages=conversation, add_generation_prompt=add_generation_prompt)
        return self.encode(text) if tokenize else text

    def _chat_template(self, *, wants_tools: bool) -> str:
        if not self.chat_templates:
            raise ValueError(
                f"{self.source} has no chat template: expected {CHAT_TEMPLATE_FILE} or a 'chat_template' key in "
                f"{TOKENIZER_CONFIG_FILE}"
            )
        if wants_tools and "tool_use" in self.chat_templates:
            return self.chat_templates["tool_use"]
        if "default" not in self.chat_templates:
            raise ValueError(
                f"{self.source}: the 'chat_template' list in {TOKENIZER_CONFIG_FILE} has no template named 'default' "
                f"(it has {sorted(self.chat_templates)})"
            )
        return self.chat_templates["default"]


# Keys a message's reasoning comes under, the first found winning; templates read `reasoning_content` (Qwen3,
# DeepSeek) or `thinking` (gpt-oss), so transformers fills in both.
_REASONING_KEYS = ("reasoning_content", "thinking", "reasoning")


def _with_reasoning_aliases(message: dict[str, Any]) -> dict[str, Any]:
    reasoning = next((message[key] for key in _REASONING_KEYS if key in message), None)
    return message if reasoning is None else {"thinking": reasoning, **message, "reasoning_content": reasoning}


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Load a tokenizer from a model directory, or from a `tokenizer.json` or sentencepiece `.model` file.

    A directory must hold tokenizer.json or tokenizer.model (tokenizer.json wins, as in `transformers`). The optional
    files are read from the same directory, also when `path` names the model file:
      tokenizer_config.json: special tokens (`bos_token`, ...) and `chat_template`.
      special_tokens_map.json: older home of the special tokens; as in transformers, it is read only when
        tokenizer_config.json has no `added_tokens_decoder`, and then wins over it.
      generation_config.json: `eos_token_id` (one id or a list: extra stop ids) and `pad_token_id`.
      chat_template.jinja: newer home of the chat template; wins over tokenizer_config.json.
    """
    path = Path(path)
    if path.is_dir():
        directory = path
        candidates = [path / HF_TOKENIZER_FILE, path / SENTENCEPIECE_FILE]
        model_file = next((candidate for candidate in candidates if candidate.is_file()), None)
        if model_file is None:
            raise FileNotFoundError(f"{path} holds neither {HF_TOKENIZER_FILE} nor {SENTENCEPIECE_FILE}")
    elif path.is_file():
        directory, model_file = path.parent, path
    else:
        raise FileNotFoundError(f"tokenizer path {path} does not exist")

    backend = _HuggingFaceBackend(model_file) if model_file.suffix == ".json" else _SentencePieceBackend(model_file)
    config = _read_json_if_present(directory / TOKENIZER_CONFIG_FILE)
    # As in transformers: special_tokens_map.json predates `added_tokens_decoder` in tokenizer_config.json. It is read
    # only next to configs without that key, and then wins over them.
    special_token_configs = [config]
    if "added_tokens_decoder" not in config:
        special_token_configs.append(_read_json_if_present(directory / SPECIAL_TOKENS_MAP_FILE))
    if isinstance(backend, _SentencePieceBackend):
        # transformers appends tokens added after training (e.g. ChatML markers) to the vocabulary; encoding
        # them as ordinary text would train and sample something else than the model's ids.
        added = {int(i) for i in config.get("added_tokens_decoder", {})} | set(
            _read_json_if_present(directory / "added_tokens.json").values())
        beyond = sorted(i for i in added if i >= backend.vocab_size)
        if beyond:
            raise ValueError(f"{directory} adds tokens beyond the sentencepiece model's {backend.vocab_size} pieces "
                             f"(ids from {beyond[0]}), which only a {HF_TOKENIZER_FILE} can hold here; save the "
                             "tokenizer with transformers (save_pretrained writes one) and load that")
    return Tokenizer(
        backend,
        source=path,
        special_tokens=_special_tokens(backend.default_special_tokens, *special_token_configs),
        extra_special_tokens=_extra_special_tokens(*special_token_configs),
        generation_config=_read_json_if_present(directory / GENERATION_CONFIG_FILE),
        chat_templates=_chat_templates(directory, config),
        add_bos_token=config["add_bos_token"] if isinstance(config.get("add_bos_token"), bool) else None,
    )


def _read_json_if_present(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def _token_text(value: Any) -> str | None:
    """A token as the configs write it: a string, or a serialized AddedToken whose text is under `content`."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _special_tokens(defaults: Mapping[str, str], *configs: Mapping[str, Any]) -> dict[str, str]:
    """Every `<name>_token` entry (bos_token, eos_token, ..., model-specific ones too); later configs win.

    `transformers` hands exactly these to chat templates as variables.
    """
    tokens = dict(defaults)
    for config in configs:
        for key, value in config.items():
            if not key.endswith("_token"):
                continue
            if value is None:
                tokens.pop(key, None)  # an explicit null (e.g. Qwen's bos_token) means the model has none
            elif (text := _token_text(value)) is not None:
                tokens[key] = text
        # transformers 5 may store named extra tokens as a mapping, e.g. {"image_token": "<image>"}.
        extra = config.get("extra_special_tokens")
        if isinstance(extra, Mapping):
            tokens.update({name: text for name, value in extra.items() if (text := _token_text(value)) is not None})
    return tokens


def _extra_special_tokens(*configs: Mapping[str, Any]) -> list[str]:
    """The unnamed special tokens: `additional_special_tokens` (transformers 4) or `extra_special_tokens` (5) lists."""
    texts = []
    for config in configs:
        for key in ("additional_special_tokens", "extra_special_tokens"):
            value = config.get(key)
            if isinstance(value, list):
                texts.extend(text for item in value if (text := _token_text(item)) is not None)
    return texts


def _chat_templates(directory: Path, config: Mapping[str, Any]) -> dict[str, str]:
    template_file = directory / CHAT_TEMPLATE_FILE
    if template_file.is_file():
        return {"default": template_file.read_text(encoding="utf-8")}
    template = config.get("chat_template")
    if template is None:
        return {}
    if isinstance(template, str):
        return {"default": template}
    # Models with several templates (e.g. a separate one for tool use) store [{"name": ..., "template": ...}, ...].
    return {entry["name"]: entry["template"] for entry in template}


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` marks assistant text for training masks; we render its body as is.

    transformers parses the same tag, so templates that use it must compile here too.
    """

    tags: ClassVar[set[str]] = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        # A call block, like transformers' own, so the body gets the same scoping as there.
        return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

    def _render_body(self, caller: jinja2.runtime.Macro) -> str:
        return caller()


def _raise_template_error(message: str) -> NoReturn:
    raise jinja2.exceptions.TemplateError(message)


def _to_json(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's built-in tojson HTML-escapes `<`, `>`, `&` and `'`, which would change tool schemas in the prompt.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(date_format: str) -> str:
    return datetime.now().strftime(date_format)


@functools.cache
def _chat_template_environment() -> jinja2.Environment:
    # The environment transformers builds: templates come from downloaded checkpoints, hence the sandbox.
    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols]
    )
    environment.filters["tojson"] = _to_json
    environment.globals["raise_exception"] = _raise_template_error
    environment.globals["strftime_now"] = _strftime_now
    return environment


@functools.lru_cache(maxsize=32)
def _compile_chat_template(source: str) -> jinja2.Template:
    return _chat_template_environment().from_string(source)
