"""Supervised fine-tuning: `mode: sft`, and the packed trainer the in-run pretraining stage uses.

    python -m r1jax.main --config configs/sft_countdown_tiny.py      # a run: checkpoints, metrics, hf_export/
    result = sft.train(model_config, params, pairs, tokenizer, steps=300, batch_size=32, seq_len=256,
                       optimizer_config=optim.optimizer_config(learning_rate=3e-3), seed=0)   # in memory

Data. A record is `{"messages": [{"role", "content"}, ...]}`, rendered with the tokenizer's chat template
and trained on its assistant turns, or `{"prompt", "completion"}`, trained on the completion: plain
prompt + completion text for base models (BOS first if the tokenizer has one and the prompt does not
start with it, EOS appended unless the completion ends with one), or a user and an assistant turn of the chat template (`data.chat_template`).
Files are JSON lines or ArrayRecord files of JSON objects (`r1jax.data.records`); other fields, such as
the provenance `mode: distill` writes, are ignored. `data.synthetic` builds Countdown journey-learning
or shortcut data in the run instead (`r1jax.data.journey`).

Each record becomes token parts alternating context and trained text, (prompt, completion) or (turns up
to an assistant turn, that turn, ...), encoded separately so every boundary is exact. Records are
shuffled by `seed` and packed greedily into `seq_len` rows: sequences side by side with their own
segment ids and positions restarting at 0, so attention never crosses a sequence and every step has one
shape (one compile). Every epoch visits the rows in a new order. A run's main process packs once into
`.npy` files under `<workdir>/data/packed/` (reused while the inputs stay the same); every process
memory-maps them and reads only the rows of each batch on its own devices.

Loss: the summed negative log-likelihood of the trained tokens (log-probs from `sampler.token_logprobs`,
the function the sampler and the RL trainer use) divided by the batch's trained-token count, so
gradient accumulation over `sft.microbatch_size`-row slices is exact. With `sft.teacher_checkpoint`,
`sft.kl_weight` times the forward KL from the teacher's next-token distribution to the student's, on
the same tokens, is added (logit distillation; the two must share a tokenizer).

A run evaluates the loss on held-out records every `eval.every` steps, writes `metrics.jsonl` and
TensorBoard events, saves orbax checkpoints (same command, same workdir: resume; SIGTERM: save and exit;
a NaN loss stops the run naming the step) and exports the final model with its tokenizer to `hf_export/`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jinja2
import ml_collections
import numpy as np
import optax

from r1jax import checkpoint as checkpoint_lib
from r1jax import metrics as metrics_lib
from r1jax import model as model_lib
from r1jax import distributed, optim, plotting, runtime, sampler, sharding
from r1jax.data import char_tokenizer, records
from r1jax.model import ModelConfig, Params
from r1jax.tokenizer import Tokenizer, load_tokenizer

# A sequence's token ids in parts that alternate context and trained text: (prompt, completion) or
# (turns before an assistant turn, that turn, turns before the next one, ...).
Parts = Sequence[Sequence[int]]


class PackedRows(NamedTuple):
    """Fixed-length rows of packed sequences, all int32 / bool [rows, seq_len].

    Padding has segment id 0 and token `pad_id`; `loss_mask` is True on trained (completion) tokens.
    """

    tokens: np.ndarray
    positions: np.ndarray
    segment_ids: np.ndarray
    loss_mask: np.ndarray

    def select(self, rows: np.ndarray) -> PackedRows:
        return PackedRows(*(array[rows] for array in self))

    def view(self, rows: np.ndarray, pad_id: int) -> PackedRows:
        """`select(rows)` as `RowView`s, read only where indexed; a row -1 is empty (padding, nothing trained)."""
        return PackedRows(*(RowView(array, rows, fill) for array, fill in zip(self, (pad_id, 0, 0, False))))


class RowView:
    """Rows `rows` of `array` (a memory map), read only when indexed: `view[index] == array[rows][index]`.

    `distributed.host_to_global` indexes a batch with the slices of this process's devices, so each
    process reads only its own rows. A row id -1 reads as a row of `fill`.
    """

    def __init__(self, array: np.ndarray, rows: np.ndarray, fill: Any):
        self._array, self._rows, self._fill = array, np.asarray(rows), fill
        self.shape = (len(self._rows), *array.shape[1:])
        self.dtype = array.dtype

    def __getitem__(self, index: Any) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        rows = self._rows[index[0]]
        ids = rows.reshape(-1)
        out = np.full((len(ids), *self.shape[1:]), self._fill, self.dtype)
        out[ids >= 0] = self._array[ids[ids >= 0]]
        return out.reshape(*rows.shape, *self.shape[1:])[(slice(None),) * rows.ndim + index[1:]]


class TrainResult(NamedTuple):
    params: Params
    losses: list[float]  # the training loss of every step, a resumed run's earlier ones included
    seconds: float = 0.0  # wall time of `train`, summed over the runs a resumed result took
    stopped: bool = False  # a signal stopped it after `len(losses)` steps, saved by its checkpointer


class Teacher(NamedTuple):
    config: ModelConfig
    params: Params


# ---------------------------------------------------------------------------------------------
# Data: records -> token parts -> packed rows


def encode_pairs(pairs: Sequence[tuple[str, str]], tokenizer: Tokenizer) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, completion ids) per pair: the prompt as the model reads it (BOS first where the tokenizer adds
    one, as RL prompts get it), the completion continuing it. A completion ending in the synthetic data's EOS text
    (`char_tokenizer.EOS`) ends in the tokenizer's EOS id, whatever that tokenizer calls its EOS."""
    bos = [tokenizer.bos_id] if tokenizer.prompt_has_bos else []
    prompts = [bos + ids if ids[:1] != bos else ids for ids in tokenizer.encode_batch([prompt for prompt, _ in pairs])]
    ends = [completion.endswith(char_tokenizer.EOS) for _, completion in pairs]
    completions = tokenizer.encode_batch([completion.removesuffix(char_tokenizer.EOS) for _, completion in pairs],
                                         continuation=True)
    eos = [tokenizer.eos_id] if tokenizer.eos_id is not None else []
    return [(prompt, completion + eos if end else completion)
            for prompt, completion, end in zip(prompts, completions, ends)]


def _encode_conversation(messages: Any, tokenizer: Tokenizer) -> list[list[int]]:
    """Parts of a chat: the text the template adds up to each assistant turn, then that turn's text.

    Each boundary is found by rendering the conversation up to it, so the template must render
    turn by turn: a prefix of the conversation renders to a prefix of the whole.
    """
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list of {\"role\", \"content\"} objects")
    for i, message in enumerate(messages):
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            raise ValueError(f"messages[{i}] is not an object with string 'role' and 'content'")
    if messages[0]["role"] == "assistant":
        raise ValueError("messages[0] is an assistant turn; it needs a turn before it to be predicted from")
    parts: list[list[int]] = []
    rendered = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        opened = tokenizer.apply_chat_template(messages[:i], add_generation_prompt=True)
        closed = tokenizer.apply_chat_template(messages[:i + 1])
        if not opened.startswith(rendered):
            raise ValueError(f"the chat template does not render messages[{i}] after the turns before it (it "
                             "rewrites earlier turns, as Qwen3's drops their thinking), so its tokens cannot be told "
                             "apart; split the conversation into one record per assistant turn")
        if not closed.startswith(opened):
            departure = closed[len(os.path.commonprefix([opened, closed])):][:24]
            raise ValueError(
                f"the chat template renders messages[{i}] otherwise than after its generation prompt, which ends "
                f"{opened[-24:]!r} where the rendered turn goes on {departure!r}"
                " (DeepSeek-R1-Distill's opens <think> in the prompt and drops the thinking from rendered turns), so "
                "the turn's tokens cannot be told apart; write prompt/completion records, the prompt rendered with "
                "its generation prompt and the completion as the model writes it after that, without "
                "data.chat_template")
        context = opened[len(rendered):]  # the first part starts the text; the others continue it
        parts += [tokenizer.encode_continuation(context) if rendered else tokenizer.encode(context),
                  tokenizer.encode_continuation(closed[len(opened):])]
        rendered = closed
    if not parts:
        raise ValueError("the conversation has no assistant turn to train on")
    return parts


def encode_record(record: Mapping[str, Any], tokenizer: Tokenizer, *, chat_template: bool = False,
                  add_eos: bool = True) -> list[list[int]]:
    """A record's parts (module docstring); raises ValueError for a record of neither layout."""
    if "messages" in record:
        return _encode_conversation(record["messages"], tokenizer)
    prompt, completion = record.get("prompt"), record.get("completion")
    if not isinstance(prompt, str) or not isinstance(completion, str):
        raise ValueError(f"expected 'messages', or string 'prompt' and 'completion'; the record has fields "
                         f"{sorted(record)}")
    if chat_template:
        return _encode_conversation([{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}],
                                    tokenizer)
    prompt_ids = tokenizer.encode_prompt(prompt)
    completion_ids = tokenizer.encode_continuation(completion)
    if add_eos and tokenizer.eos_id is not None and not (completion_ids and completion_ids[-1] in tokenizer.eos_ids):
        completion_ids.append(tokenizer.eos_id)
    return [prompt_ids, completion_ids]


def check_sequence(parts: Parts, seq_len: int) -> None:
    """Raises ValueError unless the sequence can be packed and trained on."""
    if not parts or not parts[0]:
        raise ValueError("the prompt is empty: the first token has nothing before it to be predicted from")
    if not any(parts[1::2]):
        raise ValueError("the completion is empty: nothing to train on")
    length = sum(len(part) for part in parts)
    if length > seq_len:
        raise ValueError(f"{length} tokens, more than seq_len={seq_len}")


def load_sequences(path: str, tokenizer: Tokenizer, *, seq_len: int, chat_template: bool = False,
                   add_eos: bool = True, drop_overlong: bool = False) -> tuple[list[list[list[int]]], int]:
    """(parts of every record of `path`, how many over-long records were dropped); errors name file and line."""
    sequences, dropped = [], 0
    for where, record in records.read_records(path):
        try:
            parts = encode_record(record, tokenizer, chat_template=chat_template, add_eos=add_eos)
        except (ValueError, TypeError, KeyError, jinja2.TemplateError) as e:
            raise ValueError(f"{where}: {e}") from None
        length = sum(len(part) for part in parts)
        if length > seq_len and drop_overlong:
            dropped += 1
            continue
        if length > seq_len:
            raise ValueError(f"{where}: {length} tokens, more than sft.seq_len={seq_len}; raise sft.seq_len or set "
                             "data.drop_overlong=True")
        try:
            check_sequence(parts, seq_len)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        sequences.append(parts)
    if not sequences:
        raise ValueError(f"{path}: all {dropped} records are longer than sft.seq_len={seq_len}")
    return sequences, dropped


def pack(sequences: Sequence[Parts], seq_len: int, pad_id: int) -> PackedRows:
    """Packs sequences in order, starting a new row when the next does not fit; odd parts are trained."""
    rows: list[list[Parts]] = [[]]
    used = 0
    for i, parts in enumerate(sequences):
        try:
            check_sequence(parts, seq_len)
        except ValueError as e:
            raise ValueError(f"sequence {i}: {e}") from None
        length = sum(len(part) for part in parts)
        if used + length > seq_len:
            rows.append([])
            used = 0
        rows[-1].append(parts)
        used += length
    tokens = np.full((len(rows), seq_len), pad_id, np.int32)
    positions = np.zeros((len(rows), seq_len), np.int32)
    segment_ids = np.zeros((len(rows), seq_len), np.int32)
    loss_mask = np.zeros((len(rows), seq_len), bool)
    for r, row in enumerate(rows):
        start = 0
        for segment, parts in enumerate(row, start=1):
            end = start + sum(len(part) for part in parts)
            positions[r, start:end] = np.arange(end - start)
            segment_ids[r, start:end] = segment
            for index, part in enumerate(parts):
                tokens[r, start:start + len(part)] = part
                loss_mask[r, start:start + len(part)] = index % 2 == 1
                start += len(part)
    return PackedRows(tokens, positions, segment_ids, loss_mask)


class RowBatches:
    """The rows of each step's batch: epochs of all rows in shuffled order, an epoch's remainder skipped.

    Epoch orders are drawn in turn from `rng`; `rows(step)` may jump ahead (a resumed run) and then
    draws the orders of the epochs it skips, so a resumed run gets the batches an uninterrupted one got.
    """

    def __init__(self, num_rows: int, batch_size: int, rng: np.random.Generator):
        if num_rows < batch_size:
            raise ValueError(f"{num_rows} packed rows are fewer than batch_size={batch_size}")
        self.num_rows, self.batch_size, self._rng = num_rows, batch_size, rng
        self.batches_per_epoch = num_rows // batch_size
        self._epoch, self._order = -1, np.arange(0)

    def rows(self, step: int) -> np.ndarray:
        epoch, index = divmod(step, self.batches_per_epoch)
        if epoch < self._epoch:
            raise ValueError(f"step {step} is in epoch {epoch}, but epoch {self._epoch} was already drawn")
        while self._epoch < epoch:
            self._order, self._epoch = self._rng.permutation(self.num_rows), self._epoch + 1
        return self._order[index * self.batch_size:(index + 1) * self.batch_size]


# ---------------------------------------------------------------------------------------------
# Loss and the jitted steps


def forward_kl(student_logits_xV: jax.Array, teacher_logits_xV: jax.Array) -> jax.Array:
    """`KL(teacher || student)` of the next-token distributions at each position, in float32.

    Over the ids both vocabularies have (embedding tables are often padded to different sizes).
    """
    vocab = min(student_logits_xV.shape[-1], teacher_logits_xV.shape[-1])
    student = jax.nn.log_softmax(student_logits_xV[..., :vocab].astype(jnp.float32), axis=-1)
    teacher = jax.nn.log_softmax(teacher_logits_xV[..., :vocab].astype(jnp.float32), axis=-1)
    return jnp.sum(jnp.exp(teacher) * (teacher - student), axis=-1)


def completion_loss_terms(config: ModelConfig, params: Params, rows: PackedRows,
                          teacher: Teacher | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(summed NLL, summed KL to the teacher (0 without one), count) over the trained tokens of `rows`."""
    logits_BxLxV = model_lib.forward(config, params, rows.tokens, rows.positions, rows.segment_ids)
    # Column t predicts token t + 1. A column whose next token opens another sequence reads across the
    # boundary, but that token is a prompt token, so the mask drops it.
    mask_BxLm1 = rows.loss_mask[:, 1:].astype(jnp.float32)
    logprobs_BxLm1 = sampler.token_logprobs(logits_BxLxV[:, :-1], rows.tokens[:, 1:])
    nll = -jnp.sum(logprobs_BxLm1 * mask_BxLm1)
    kl = jnp.zeros((), jnp.float32)
    if teacher is not None:
        teacher_logits_BxLxV = jax.lax.stop_gradient(
            model_lib.forward(teacher.config, teacher.params, rows.tokens, rows.positions, rows.segment_ids))
        kl = jnp.sum(forward_kl(logits_BxLxV[:, :-1], teacher_logits_BxLxV[:, :-1]) * mask_BxLm1)
    return nll, kl, jnp.sum(mask_BxLm1)


def completion_loss(config: ModelConfig, params: Params, rows: PackedRows) -> jax.Array:
    """Mean negative log-likelihood of the trained tokens of `rows` (arrays of one batch)."""
    nll, _, count = completion_loss_terms(config, params, rows)
    return nll / jnp.maximum(count, 1.0)


def make_train_step(model_config: ModelConfig, optimizer: optax.GradientTransformation, schedule: optax.Schedule,
                    state_shardings=None, *, microbatch_size: int = 0, teacher_config: ModelConfig | None = None,
                    kl_weight: float = 0.0):
    """The jitted update `(state, teacher_params, rows, num_items) -> (state, metrics)`.

    `state` is `{"params", "opt_state", "step"}`, donated and kept on `state_shardings`; `num_items` is
    the batch's trained-token count, the loss's divisor (module docstring); `teacher_params` is None
    without a teacher.
    """

    def loss_fn(params, teacher_params, rows, num_items):
        teacher = None if teacher_config is None else Teacher(teacher_config, teacher_params)
        nll, kl, _ = completion_loss_terms(model_config, params, rows, teacher)
        metrics = {} if teacher is None else dict(nll=nll / num_items, kl=kl / num_items)
        return (nll + kl_weight * kl) / num_items, metrics

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def train_step(state, teacher_params, rows, num_items):
        ((loss, metrics), grads), _ = optim.sum_over_microbatches(
            lambda microbatch: grad_fn(state["params"], teacher_params, microbatch, num_items), rows, microbatch_size)
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads), learning_rate=schedule(state["step"]))
        return dict(state, params=params, opt_state=opt_state, step=state["step"] + 1), metrics

    return jax.jit(train_step, donate_argnums=0, out_shardings=(state_shardings, None))


def trained_per_row(rows: PackedRows) -> np.ndarray:
    """Per row, the trained tokens that have a token before them (the ones the loss counts)."""
    return np.asarray(rows.loss_mask)[:, 1:].sum(axis=1)


def loss_divisor(trained: np.ndarray) -> np.float32:
    """The count `make_train_step`'s loss divides by, from the batch's `trained_per_row`."""
    return np.float32(max(trained.sum(), 1))


def _resume(checkpointer: checkpoint_lib.Checkpointer, abstract_state: Any,
            data_signature: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The latest checkpoint's state and metadata, refused if it was trained on other data."""
    state, metadata = checkpointer.restore(abstract_state)
    if metadata.get("data") != data_signature:
        raise ValueError(f"the training data changed since the checkpoint in {checkpointer.directory} "
                         f"({metadata.get('data')} then, {data_signature} now); use a new workdir")
    print(f"resumed from step {checkpointer.latest_step()} in {checkpointer.directory}", flush=True)
    return state, metadata


def train(model_config: ModelConfig, params: Params, pairs: Sequence[tuple[str, str]], tokenizer: Tokenizer, *,
          steps: int, batch_size: int, seq_len: int, optimizer_config: ml_collections.ConfigDict, seed: int = 0,
          log_every: int = 0, checkpointer: checkpoint_lib.Checkpointer | None = None) -> TrainResult:
    """`steps` AdamW steps on `batch_size` packed rows of (prompt, completion) text pairs, in memory.

    Epochs are reshuffled by `seed`; `log_every` > 0 prints the mean loss of the last `log_every` steps.
    With a `checkpointer`, training continues from its latest step, on the batches an uninterrupted run
    gets; it saves at the checkpointer's interval and after the last step, and on SIGTERM or SIGINT saves
    the step reached and returns `stopped`. The losses and seconds so far travel in the checkpoint.
    """
    start = time.perf_counter()
    params = jax.tree.map(jnp.copy, params)  # the step donates its params; keep the caller's intact
    rng = np.random.default_rng(seed)
    encoded = encode_pairs(pairs, tokenizer)
    order = rng.permutation(len(encoded))  # shuffled before packing, so rows mix sequence kinds
    packed = pack([encoded[i] for i in order], seq_len, tokenizer.pad_id)
    if len(packed.tokens) < batch_size:
        raise ValueError(f"the pairs fill {len(packed.tokens)} rows of {seq_len} tokens, fewer than "
                         f"batch_size={batch_size}")
    batches = RowBatches(len(packed.tokens), batch_size, rng)
    optimizer, schedule = optim.make_optimizer(optimizer_config, steps)
    state = dict(params=params, opt_state=optimizer.init(params), step=jnp.zeros((), jnp.int32))
    losses: list[float] = []
    earlier_seconds = 0.0
    # The batches follow from the seed and the packed rows; other pairs would silently reorder them.
    data_signature = dict(rows=len(packed.tokens), trained_tokens=int(trained_per_row(packed).sum()))
    if checkpointer is not None and checkpointer.latest_step() is not None:
        state, metadata = _resume(checkpointer, state, data_signature)  # onto the fresh state's shardings
        losses, earlier_seconds = list(metadata["losses"]), float(metadata["seconds"])
    train_step = make_train_step(model_config, optimizer, schedule)
    # Without a checkpointer a signal has nothing to save, so it ends the process as usual.
    guard = checkpoint_lib.PreemptionGuard() if checkpointer is not None else None
    stopped = False
    try:
        with guard or contextlib.nullcontext():
            for step in range(len(losses), steps):
                batch = packed.select(batches.rows(step))
                state, metrics = train_step(state, None, batch, loss_divisor(trained_per_row(batch)))
                losses.append(float(metrics["loss"]))
                if not np.isfinite(losses[-1]):  # before any save: a diverged state never reaches a checkpoint
                    kept = f"; the last good checkpoint is kept in {checkpointer.directory}" if checkpointer else ""
                    raise optim.TrainingDiverged(f"loss is {losses[-1]} at step {step + 1}{kept}. Lower the learning "
                                                 "rate or check the data.")
                if log_every and (step + 1) % log_every == 0:
                    print(f"sft step {step + 1}/{steps}: loss {np.mean(losses[-log_every:]):.4f} "
                          f"({time.perf_counter() - start:.0f} s)", flush=True)
                if guard is None:
                    continue
                # Read once: a signal from here on forces this step's save and ends the loop after it.
                stopped = guard.stop_agreed()
                # A copy of the losses: an asynchronous save may write its metadata after the next append.
                metadata = dict(data=data_signature, losses=losses[:],
                                seconds=earlier_seconds + time.perf_counter() - start)
                checkpointer.save(step + 1, state, metadata, force=stopped or step + 1 == steps)
                if stopped:
                    break
    finally:
        if checkpointer is not None:
            checkpointer.wait_until_finished()  # also on errors: an async save in flight completes
    return TrainResult(state["params"], losses, earlier_seconds + time.perf_counter() - start, stopped)


# ---------------------------------------------------------------------------------------------
# mode: sft


def validate_config(config: ml_collections.ConfigDict, batch_ways: int = 1) -> None:
    """The sft mode's keys; raises ConfigError naming the first bad one. `batch_ways`: how many ways the
    mesh splits the batch."""
    # Lazily: r1jax.config imports r1jax.pretrain, which imports this module.
    from r1jax.config import ConfigError, validate_countdown_data, validate_optimizer, validate_tokenizer
    from r1jax.data import journey, synthetic

    validate_tokenizer(config)
    d, s = config.data, config.sft
    checks = [
        ("steps", config.steps > 0, f"{config.steps} must be positive"),
        ("data.synthetic", d.synthetic in ("", *journey.VARIANTS),
         f"{d.synthetic!r} is not '' (read data.train_file) or one of {', '.join(journey.VARIANTS)}"),
        ("data.train_file", not (d.synthetic and d.train_file),
         f"{d.train_file!r} is set, and so is data.synthetic={d.synthetic!r}; set one of them"),
        ("data.train_file", bool(d.synthetic) or os.path.isfile(d.train_file),
         f"{d.train_file!r} is not a file; point it at a JSONL file of {{\"messages\": [...]}} or "
         "{\"prompt\", \"completion\"} records (or set data.synthetic)"),
        ("data.eval_file", not d.eval_file or os.path.isfile(d.eval_file),
         f"{d.eval_file!r} is not a file; point it at held-out records, or set it to '' (see data.eval_size)"),
        ("data.eval_size", d.eval_size >= 0 and not (d.eval_size and (d.eval_file or d.synthetic)),
         f"{d.eval_size} must be >= 0, and 0 when data.eval_file or data.synthetic provides the held-out records"),
        ("eval.every", config.eval.every >= 0, f"{config.eval.every} must be >= 0 (0: no evaluation)"),
        ("eval.every", not config.eval.every or d.eval_file or d.eval_size or d.synthetic,
         "is set, but there are no held-out records: set data.eval_file or data.eval_size, or eval.every=0"),
        ("sft.seq_len", s.seq_len > 1, f"{s.seq_len} must be at least 2"),
        ("sft.microbatch_size", s.microbatch_size >= 0 and not (s.microbatch_size and (
            config.batch_size % s.microbatch_size or s.microbatch_size % batch_ways)),
         f"{s.microbatch_size} must divide batch_size={config.batch_size} and be a multiple of the {batch_ways} "
         "ways the mesh splits the batch (0: no split)"),
        ("sft.kl_weight", s.kl_weight >= 0, f"{s.kl_weight} must be >= 0"),
        ("sft.teacher_checkpoint", bool(s.teacher_checkpoint) == (s.kl_weight > 0),
         f"{s.teacher_checkpoint!r} with kl_weight={s.kl_weight}: logit distillation needs both a teacher and "
         "a positive sft.kl_weight, and neither is used without the other"),
        ("sft.teacher_checkpoint", not s.teacher_checkpoint
         or os.path.isfile(os.path.join(s.teacher_checkpoint, "config.json")),
         f"{s.teacher_checkpoint!r} is not a Hugging Face model directory (config.json + *.safetensors)"),
        ("log_every", config.log_every > 0, f"{config.log_every} must be positive"),
        ("checkpoint_every", config.checkpoint_every > 0, f"{config.checkpoint_every} must be positive"),
        ("keep_checkpoints", config.keep_checkpoints > 0, f"{config.keep_checkpoints} must be positive"),
    ]
    if d.synthetic:
        j = d.journey
        checks += [
            ("data.journey.min_wrong", 0 <= j.min_wrong <= j.max_wrong,
             f"need 0 <= min_wrong <= max_wrong, got {j.min_wrong}, {j.max_wrong}"),
            ("data.journey.style", j.style in synthetic.STYLES,
             f"{j.style!r} is not one of {', '.join(synthetic.STYLES)}"),
            ("data.journey.traces_per_example", j.traces_per_example > 0, f"{j.traces_per_example} must be positive"),
            ("data.journey.max_value", j.max_value >= 0, f"{j.max_value} must be >= 0 (0: no bound)"),
        ]
    for key, ok, message in checks:
        if not ok:
            raise ConfigError(f"config.{key}: {message}")
    validate_optimizer(config.optimizer)
    if d.synthetic:
        validate_countdown_data(d.countdown)


def _data_files(config: ml_collections.ConfigDict, workdir: str) -> tuple[str, str]:
    """(train file, eval file or ''); synthetic data is written under `<workdir>/data` first."""
    from r1jax.data import countdown, journey

    d = config.data
    if not d.synthetic:
        return d.train_file, d.eval_file
    test, train = countdown.generate_splits(countdown.CountdownConfig(**dict(d.countdown)))
    j = d.journey
    paths = []
    for split, examples, traces in (("train", train, j.traces_per_example), ("eval", test, 1)):
        path = os.path.join(workdir, "data", f"{d.synthetic}_{split}.jsonl")
        if distributed.is_main_process():
            records.write_records(path, journey.corpus(
                examples, variant=d.synthetic, seed=config.seed, traces_per_example=traces, min_wrong=j.min_wrong,
                max_wrong=j.max_wrong, style=j.style, max_value=j.max_value or None))
        paths.append(path)
    distributed.barrier("sft data written")  # the others read these files next
    return paths[0], paths[1]


def _same_vocabulary(a: Tokenizer, b: Tokenizer) -> bool:
    return a.vocab_size == b.vocab_size and all(a.id_to_token(i) == b.id_to_token(i) for i in range(a.vocab_size))


def _load_teacher(config: ml_collections.ConfigDict, tokenizer: Tokenizer, mesh, rules) -> Teacher | None:
    path = config.sft.teacher_checkpoint
    if not path:
        return None
    try:
        teacher_tokenizer = load_tokenizer(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"sft.teacher_checkpoint: {path!r} has no readable tokenizer ({e}); logit distillation "
                         "needs the teacher's tokenizer to check that it is the student's") from None
    if not _same_vocabulary(teacher_tokenizer, tokenizer):
        raise ValueError(f"sft.teacher_checkpoint: the tokenizer of {path!r} is not the student's "
                         f"({tokenizer.source}); logit distillation compares distributions token by token")
    teacher_config = runtime.model_config(config, checkpoint=path)
    return Teacher(teacher_config, runtime.load_or_init_params(config, teacher_config, mesh, rules, checkpoint=path))


class StoredRows(NamedTuple):
    """Packed rows memory-mapped from `.npy` files, with per-row counts for totals over a batch that read
    none of its rows: `trained_per_row`, and the non-padding tokens of each row."""

    rows: PackedRows
    trained_per_row: np.ndarray
    tokens_per_row: np.ndarray


PACKED_DIR = os.path.join("data", "packed")
_PACKED_META = "packed.json"
_PACKED_FORMAT = 1  # raise when packing changes, so that rows packed before are packed again


def _record_order(num_records: int, seed: int) -> tuple[np.ndarray, np.random.Generator]:
    """The records' shuffle before packing, and the generator after it, which draws the epochs' orders."""
    rng = np.random.default_rng(seed)
    return rng.permutation(num_records), rng


def _packing_inputs(config: ml_collections.ConfigDict, tokenizer: Tokenizer, train_file: str,
                    eval_file: str) -> dict[str, Any]:
    """What the packed rows follow from (as JSON reads it back); other inputs mean packing again."""
    d = config.data

    def file(path: str) -> dict[str, Any]:
        stat = os.stat(path)
        return dict(path=os.path.abspath(path), size=stat.st_size, mtime_ns=stat.st_mtime_ns)

    templates = hashlib.sha256(json.dumps(tokenizer.chat_templates, sort_keys=True).encode()).hexdigest()
    return json.loads(json.dumps(dict(
        format=_PACKED_FORMAT, train_file=file(train_file), eval_file=file(eval_file) if eval_file else None,
        seq_len=config.sft.seq_len, tokenizer=repr(tokenizer), chat_templates_sha256=templates,
        chat_template=d.chat_template, add_eos=d.add_eos, drop_overlong=d.drop_overlong, eval_size=d.eval_size,
        seed=config.seed)))


def _read_packing(directory: str, inputs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record of the rows in `directory` if they were packed from `inputs`, else None."""
    try:
        with open(os.path.join(directory, _PACKED_META)) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if meta.get("inputs") == inputs else None


def _replace_atomically(path: str, write) -> None:
    """`write(file)` to a temporary name renamed to `path`: a killed run leaves no half file there."""
    with open(path + ".partial", "wb") as f:
        write(f)
    os.replace(path + ".partial", path)


def _pack_records(config: ml_collections.ConfigDict, tokenizer: Tokenizer, train_file: str, eval_file: str,
                  directory: str, inputs: Mapping[str, Any]) -> None:
    """Tokenizes and packs the records into `directory`: one `.npy` file per array, then the JSON record."""
    d, seq_len = config.data, config.sft.seq_len
    load = dict(seq_len=seq_len, chat_template=d.chat_template, add_eos=d.add_eos, drop_overlong=d.drop_overlong)
    sequences, dropped = load_sequences(train_file, tokenizer, **load)
    if d.eval_size >= len(sequences):
        raise ValueError(f"data.eval_size={d.eval_size} leaves none of the {len(sequences)} records of "
                         f"{train_file} to train on")
    order, _ = _record_order(len(sequences), config.seed)
    eval_sequences = [sequences[i] for i in order[:d.eval_size]]
    if eval_file:
        eval_sequences, eval_dropped = load_sequences(eval_file, tokenizer, **load)
        dropped += eval_dropped
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    train_rows = pack([sequences[i] for i in order[d.eval_size:]], seq_len, pad_id)
    arrays = dict(zip((f"train.{name}" for name in PackedRows._fields), train_rows))
    arrays["train.trained_per_row"] = trained_per_row(train_rows).astype(np.int32)
    arrays["train.tokens_per_row"] = (train_rows.segment_ids > 0).sum(axis=1).astype(np.int32)
    if eval_sequences:
        arrays.update(zip((f"eval.{name}" for name in PackedRows._fields), pack(eval_sequences, seq_len, pad_id)))
    os.makedirs(directory, exist_ok=True)
    meta_path = os.path.join(directory, _PACKED_META)
    if os.path.exists(meta_path):
        os.remove(meta_path)  # first: files replaced below never pass for the old packing
    for name, array in arrays.items():
        _replace_atomically(os.path.join(directory, f"{name}.npy"), lambda f: np.save(f, array))
    meta = dict(inputs=inputs, records=len(sequences), dropped=dropped, held_out=bool(eval_sequences))
    _replace_atomically(meta_path, lambda f: f.write(json.dumps(meta, indent=1).encode()))


def _packed_data(config: ml_collections.ConfigDict, tokenizer: Tokenizer,
                 workdir: str) -> tuple[StoredRows, PackedRows | None, np.random.Generator]:
    """(shuffled training rows, held-out rows or None, the generator to draw the epochs' orders from).

    The rows are memory-mapped from `<workdir>/PACKED_DIR`, where the main process packs them unless a
    run before packed the same inputs; the others wait for it and read only the rows they need.
    """
    train_file, eval_file = _data_files(config, workdir)
    directory = os.path.join(workdir, PACKED_DIR)
    inputs = _packing_inputs(config, tokenizer, train_file, eval_file)
    if distributed.is_main_process():
        try:
            if _read_packing(directory, inputs) is None:
                _pack_records(config, tokenizer, train_file, eval_file, directory, inputs)
        finally:
            distributed.barrier("sft rows packed")  # also after an error: the others fail below, not wait
    else:
        distributed.barrier("sft rows packed")
    meta = _read_packing(directory, inputs)
    if meta is None:
        raise ValueError(f"{directory} holds no rows packed from this run's data: the main process failed to pack "
                         "them (see its error)")
    seq_len = config.sft.seq_len
    if meta["dropped"]:
        print(f"dropped {meta['dropped']} records longer than sft.seq_len={seq_len}")

    def load(split: str, names: Sequence[str]) -> list[np.ndarray]:
        return [np.load(os.path.join(directory, f"{split}.{name}.npy"), mmap_mode="r") for name in names]

    train = StoredRows(PackedRows(*load("train", PackedRows._fields)), *load("train", StoredRows._fields[1:]))
    if len(train.trained_per_row) < config.batch_size:
        raise ValueError(f"{train_file}: the records fill {len(train.trained_per_row)} rows of sft.seq_len={seq_len} "
                         f"tokens, fewer than batch_size={config.batch_size}; lower batch_size or add records")
    eval_rows = PackedRows(*load("eval", PackedRows._fields)) if meta["held_out"] else None
    return train, eval_rows, _record_order(meta["records"], config.seed)[1]


def _format_metrics(step: int, metrics: Mapping[str, float]) -> str:
    shown = ("loss", "kl", "eval/loss", "grad_norm", "tokens_per_s")
    return f"step {step}: " + " ".join(f"{k}={metrics[k]:.4g}" for k in shown if k in metrics)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains, exports the final model in Hugging Face format, draws the curves and prints a summary.

    Returns the steps done (fewer than `steps` when preempted), the last held-out loss, the final params
    and, when finished, the export directory.
    """
    validate_config(config)
    start_time = time.perf_counter()
    mesh, rules = runtime.mesh_and_rules(config)
    model_config = runtime.model_config(config)
    tokenizer = runtime.tokenizer(config, workdir)
    if tokenizer.vocab_size > model_config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                         f"{model_config.vocab_size}; set config.model.vocab_size or use the model's tokenizer")
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    train, eval_rows, rng = _packed_data(config, tokenizer, workdir)
    batches = RowBatches(len(train.trained_per_row), config.batch_size, rng)
    optimizer, schedule = optim.make_optimizer(config.optimizer, config.steps)
    with sharding.use_mesh(mesh, rules):
        params = runtime.load_or_init_params(config, model_config, mesh, rules)
        teacher = _load_teacher(config, tokenizer, mesh, rules)
        opt_state = runtime.init_optimizer_state(optimizer, params, mesh)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    state = dict(params=params, opt_state=opt_state, step=jax.device_put(jnp.zeros((), jnp.int32), replicated))
    state_shardings = jax.tree.map(lambda x: x.sharding, state)
    checkpointer = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                               save_interval_steps=config.checkpoint_every,
                                               max_to_keep=config.keep_checkpoints)
    # The batches follow from the seed and the packed rows; a changed dataset would silently reorder them.
    # (A row's first token is a prompt token, so the trained tokens are those of `trained_per_row`.)
    data_signature = dict(train_rows=len(train.trained_per_row), trained_tokens=int(train.trained_per_row.sum()))
    restored_step = checkpointer.latest_step()
    if restored_step is not None:
        abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, state_shardings)
        state, _ = _resume(checkpointer, abstract, data_signature)
    writer = metrics_lib.MetricsWriter(workdir, resume_step=metrics_lib.first_step_to_write(restored_step),
                                       enabled=distributed.is_main_process())
    train_step = make_train_step(model_config, optimizer, schedule, state_shardings,
                                 microbatch_size=config.sft.microbatch_size,
                                 teacher_config=None if teacher is None else teacher.config,
                                 kl_weight=config.sft.kl_weight)
    teacher_params = None if teacher is None else teacher.params
    batch_shardings = PackedRows(*[sharding.batch_sharding(mesh, rules, 2)] * 4)

    @jax.jit
    def eval_sums(params, rows):
        nll, _, count = completion_loss_terms(model_config, params, rows)
        return nll, count

    def evaluate() -> dict[str, float]:
        """Runs only when there are held-out rows (validated); the last batch is filled with empty rows (-1)."""
        num_rows = len(eval_rows.tokens)
        ids = np.arange(-(-num_rows // config.batch_size) * config.batch_size)
        ids[num_rows:] = -1
        totals = [eval_sums(state["params"], distributed.host_to_global(
                      eval_rows.view(ids[i:i + config.batch_size], pad_id), batch_shardings))
                  for i in range(0, len(ids), config.batch_size)]
        nll, count = np.sum(jax.device_get(totals), axis=0)
        return {"eval/loss": float(nll / count)}

    step = int(state["step"])
    last_eval = None
    pending: list[dict[str, jax.Array]] = []  # metrics of the steps since the last log, read back together
    window_start, window_tokens = time.perf_counter(), 0.0
    try:
        with sharding.use_mesh(mesh, rules), checkpoint_lib.PreemptionGuard() as preemption:
            if step == 0 and config.eval.every:
                last_eval = evaluate()
                writer.write(0, last_eval)
                print(_format_metrics(0, last_eval))
            while step < config.steps:
                ids = batches.rows(step)
                state, metrics = train_step(state, teacher_params,
                                            distributed.host_to_global(train.rows.view(ids, pad_id), batch_shardings),
                                            loss_divisor(train.trained_per_row[ids]))
                pending.append(metrics)
                window_tokens += float(train.tokens_per_row[ids].sum())
                step += 1
                # Read once: a SIGTERM from here on forces this step's save and ends the run after it.
                stop = preemption.stop_agreed()
                last = step == config.steps or stop
                save = last or step % config.checkpoint_every == 0
                evaluation = {}
                if config.eval.every and (step == config.steps or step % config.eval.every == 0):
                    evaluation = last_eval = evaluate()
                if save or evaluation or step % config.log_every == 0:
                    # Read back before any save, so a NaN step never reaches a checkpoint.
                    values = jax.device_get(pending)
                    finite = np.isfinite([v["loss"] for v in values])
                    if not finite.all():
                        first_bad = int(np.argmin(finite))
                        raise optim.TrainingDiverged(
                            f"loss is {values[first_bad]['loss']} at step {step - len(values) + first_bad + 1}; the "
                            f"last good checkpoint is kept in {checkpointer.directory}. Lower "
                            "optimizer.learning_rate or check the data.")
                    logged = {k: float(np.mean([v[k] for v in values])) for k in values[0]}
                    logged["learning_rate"] = float(values[-1]["learning_rate"])
                    logged["tokens_per_s"] = window_tokens / (time.perf_counter() - window_start)
                    logged["epoch"] = step / batches.batches_per_epoch
                    logged.update(evaluation)
                    writer.write(step, logged)
                    print(_format_metrics(step, logged), flush=True)
                    pending, window_start, window_tokens = [], time.perf_counter(), 0.0
                checkpointer.save(step, state, {"data": data_signature}, force=last)
                if stop:
                    print(f"preempted: saved step {step}, exiting")
                    break
    finally:
        # Also on errors: an async save in flight completes, and metrics reach the disk.
        checkpointer.wait_until_finished()
        writer.close()
    summary = dict(steps=step, final_eval=last_eval, params=state["params"])
    if step < config.steps:
        return dict(summary, stopped=True)  # preempted: the next run in this workdir continues
    export_dir = runtime.export_final_model(workdir, model_config, state["params"], tokenizer)
    if not distributed.is_main_process():
        return dict(summary, export_dir=export_dir)
    history = metrics_lib.read_metrics(os.path.join(workdir, metrics_lib.METRICS_FILE))
    keys = [k for k in ("loss", "eval/loss", "nll", "kl", "grad_norm", "learning_rate") if any(k in r for r in history)]
    curves = plotting.plot_metrics(history, os.path.join(workdir, "curves.png"), keys=keys)
    table = [("training rows (packed)", f"{len(train.trained_per_row)} x {config.sft.seq_len} tokens, "
                                        f"{config.steps / batches.batches_per_epoch:.2f} epochs")]
    evals = [r["eval/loss"] for r in history if "eval/loss" in r]
    if evals:  # from the history, so a resumed run shows the loss before its first invocation's training
        table.append(("held-out loss", f"{evals[0]:.4f} -> {evals[-1]:.4f}"))
    table += [("curves", curves), ("checkpoints", checkpointer.directory), ("final model (HF)", export_dir),
              ("wall time of this invocation", f"{time.perf_counter() - start_time:.0f} s")]
    width = max(len(name) for name, _ in table)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in table))
    return dict(summary, export_dir=export_dir, curves=curves)
