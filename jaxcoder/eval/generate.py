"""Generation with a KV cache: one jitted prefill over the (left-padded) prompts, then one jitted
decode step per token, both through the model's own cached path (`Decoder.decode`).

Padding and empty cache slots are never attended to. Here: sampling (greedy, temperature,
top-k, top-p), batching, stopping (EOS ids, stop strings, a token limit) and sharding.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxcoder.model import functional as F
from jaxcoder.model.config import ModelConfig
from jaxcoder.model.decoder import CACHE_AXES
from jaxcoder.parallel.context import context_size
from jaxcoder.parallel.rules import DEFAULT_RULES, Rules, constrain, logical_to_spec, sharding_rules, tree_shardings


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0


def sample_logits(logits: jax.Array, key: jax.Array, s: SamplingConfig) -> jax.Array:
    """logits [B, V] -> token ids [B]."""
    if s.temperature <= 0:
        return jnp.argmax(logits, axis=-1)
    logits = logits / s.temperature
    if s.top_k:
        kth = jax.lax.top_k(logits, s.top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if s.top_p < 1.0:
        logits = jnp.where(nucleus(logits, s.top_p), logits, -jnp.inf)
    return inverse_cdf_sample(logits, key)


def inverse_cdf_sample(logits: jax.Array, key: jax.Array) -> jax.Array:
    """One token per row drawn with probability softmax(logits): the first token whose cumulative
    probability reaches u * total, u uniform in (0, 1] (never a zero-probability token).

    The same distribution as `jax.random.categorical`, which draws a Gumbel number per vocabulary
    entry: on CPU that random stream cost more than the model's decode step (3.6 ms vs 1.0 ms for
    16 x 8192); this draws one number per row."""
    cdf = jnp.cumsum(jax.nn.softmax(logits.astype(jnp.float32), axis=-1), axis=-1)
    u = (1.0 - jax.random.uniform(key, (logits.shape[0], 1))) * cdf[:, -1:]
    return jnp.minimum(jnp.sum(cdf < u, axis=-1), logits.shape[-1] - 1)


def nucleus(logits: jax.Array, top_p: float) -> jax.Array:
    """The tokens top-p sampling keeps (logits [B, V] -> bool [B, V]): those at or above the
    largest logit v whose tokens >= v hold at least `top_p` of the probability (the smallest
    most-likely prefix reaching top_p, ties at its edge included; always at least one token).

    v is found by bisection over float32's bit patterns mapped to order-preserving uint32 keys:
    32 masked sums over the vocabulary. Sorting each row (the textbook way) is exact too, but
    XLA's CPU sort of a 8K-50K vocabulary per decode step cost more than the model's forward."""
    logits = logits.astype(jnp.float32)
    probs = jax.nn.softmax(logits, axis=-1)
    # -0.0 == 0.0 but their bits differ: one zero, so tied zeros stay tied.
    bits = jax.lax.bitcast_convert_type(jnp.where(logits == 0, 0.0, logits), jnp.uint32)
    keys = jnp.where(bits >> 31 == 1, ~bits, bits | jnp.uint32(1 << 31))  # key order == float order
    rows = logits.shape[0]

    def halve(_, bounds):
        lo, hi = bounds  # invariant: the tokens with key >= lo hold >= top_p of the mass
        mid = lo + ((hi - lo) >> 1) + ((hi - lo) & 1)
        ok = jnp.sum(jnp.where(keys >= mid[:, None], probs, 0.0), axis=-1) >= top_p
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid - 1)

    lo, _ = jax.lax.fori_loop(0, 32, halve, (jnp.zeros(rows, jnp.uint32), jnp.full(rows, 0xFFFFFFFF, jnp.uint32)))
    return keys >= lo[:, None]


@functools.lru_cache(maxsize=16)
def _compiled(cfg: ModelConfig, s: SamplingConfig, batch: int, prefill_rows: int, prompt_len: int, total: int,
              mesh=None, rules: Rules = DEFAULT_RULES):
    @jax.jit
    def prefill(params, tokens, seg, positions, rows, key):
        # Each distinct prompt is prefilled once; `rows` [batch] picks every row's prompt, so a
        # problem's n samples share one prompt's K/V (prefix sharing) at a prefill_rows-row cost.
        cache = F.init_cache(cfg, prefill_rows, total)
        logits, cache = F.decode(cfg, params, tokens, seg, positions, cache, 0)
        shared = {name: constrain(jnp.take(cache[name], rows, axis=1), CACHE_AXES) for name in ("k", "v")}
        nxt = sample_logits(jnp.take(logits[:, -1], rows, axis=0), key, s)
        return nxt, {**shared, "seg": jnp.take(cache["seg"], rows, axis=0),
                     "pos": jnp.take(positions[:, -1] + 1, rows, axis=0)}

    @functools.partial(jax.jit, donate_argnums=(1,))
    def decode(params, cache, token, slot, key):
        b = token.shape[0]
        seg = jnp.ones((b, 1), jnp.int32)
        pos = cache["pos"][:, None]
        logits, cache = F.decode(cfg, params, token[:, None], seg, pos, cache, slot)
        return sample_logits(logits[:, -1], key, s), {**cache, "pos": cache["pos"] + 1}

    return prefill, decode


def place(cfg: ModelConfig, params, mesh, rules: Rules = DEFAULT_RULES):
    """Parameters laid out on `mesh` by the logical-axis rules (for sharded generation)."""
    return jax.device_put(params, tree_shardings(F.param_axes(cfg), mesh, rules))


def prompt_slots(longest: int) -> int:
    """The prompt buffer for prompts of up to `longest` tokens: a power of two (few compiles)."""
    return max(32, 1 << (longest - 1).bit_length())


def prefill_rows_for(distinct: int, batch: int, mesh=None, rules: Rules = DEFAULT_RULES) -> int:
    """Rows the shared prefill computes for `distinct` prompts in a batch: a power of two, a
    multiple of the devices the batch is sharded over, at most the batch."""
    shards = 1
    if mesh is not None:
        for axis in jax.tree.leaves(tuple(logical_to_spec(("batch",), rules, mesh.axis_names))):
            shards *= mesh.shape[axis]
    rows = 1 << (max(distinct, 1) - 1).bit_length()
    return min(batch, -(-max(rows, shards) // shards) * shards)


def batches(prompts: Sequence[Sequence[int]], batch_size: int, mesh=None, rules: Rules = DEFAULT_RULES):
    """Splits many prompts into batches of one shape: yields (offset, batch, generate's keyword
    arguments); the last batch is topped up with copies of its last prompt (drop their outputs:
    the first len(prompts) - offset rows are real). One shape means one eval compiles one prefill
    and one decode program, not a pair per prompt length and batch size (a pair is ~3 s on CPU)."""
    size = min(batch_size, len(prompts))
    chunks = [list(prompts[i:i + size]) for i in range(0, len(prompts), size)]
    chunks[-1] += [chunks[-1][-1]] * (size - len(chunks[-1]))
    distinct = max(len({tuple(p) for p in c}) for c in chunks)
    kw = {"prompt_len": prompt_slots(max(len(p) for p in prompts)),
          "prefill_rows": prefill_rows_for(distinct, size, mesh, rules)}
    for n, chunk in enumerate(chunks):
        yield n * size, chunk, kw


def generate(cfg: ModelConfig, params, prompts: Sequence[Sequence[int]], s: SamplingConfig,
             stop_ids: Sequence[int] = (), stop_check: Callable[[int, list[int]], bool] | None = None,
             mesh=None, rules: Rules = DEFAULT_RULES, *, prompt_len: int | None = None,
             prefill_rows: int | None = None) -> list[list[int]]:
    """Continues each prompt by up to s.max_new_tokens tokens. A row stops at a stop id (kept out of
    the output) or when stop_check(row, new_tokens) says so (the caller trims stop strings).

    Rows with the same prompt share its prefill (its K/V is computed once and copied). A caller
    generating many batches passes the same `prompt_len` (slots, at least the longest prompt) and
    `prefill_rows` (at least the distinct prompts of any batch) to every batch, so one eval
    compiles one prefill and one decode program; by default both fit this batch.

    With a mesh (and params from `place`), prompts, activations and the KV cache are sharded by the
    same rules as training: batch over data/fsdp, KV heads over tensor."""
    if not prompts or min(len(p) for p in prompts) == 0:
        raise ValueError("every prompt needs at least one token")
    if context_size(mesh) > 1:
        raise ValueError(f"generation takes a mesh without a context axis (this one has context="
                         f"{context_size(mesh)}); MeshConfig.without_context() folds it into data")
    b = len(prompts)
    distinct: dict[tuple[int, ...], int] = {}
    rows = np.array([distinct.setdefault(tuple(p), len(distinct)) for p in prompts], np.int32)
    longest_prompt = max(len(p) for p in prompts)
    p_len = prompt_len or prompt_slots(longest_prompt)
    u = prefill_rows or prefill_rows_for(len(distinct), b, mesh, rules)
    if p_len < longest_prompt or u < len(distinct):
        raise ValueError(f"prompt_len {p_len} / prefill_rows {u} cannot hold {longest_prompt}-token prompts / "
                         f"{len(distinct)} distinct prompts; pass at least those (or neither)")
    total = p_len + s.max_new_tokens
    # Positions restart at 0 in every (left-padded) row, so the padding never needs a position.
    longest = longest_prompt + s.max_new_tokens - 1
    if cfg.position == "learned" and longest >= cfg.max_seq_len:
        raise ValueError(f"the longest prompt ({longest_prompt} tokens) + max_new_tokens "
                         f"({s.max_new_tokens}) reaches position {longest}, past model.max_seq_len "
                         f"{cfg.max_seq_len} (learned positions)")
    tokens = np.zeros((u, p_len), np.int32)
    seg = np.zeros((u, p_len), np.int32)
    positions = np.zeros((u, p_len), np.int32)
    unique = list(distinct)
    for i in range(u):  # left padding: every prompt ends at the same slot; spare rows repeat the first
        p = unique[i] if i < len(unique) else unique[0]
        tokens[i, p_len - len(p):] = p
        seg[i, p_len - len(p):] = 1
        positions[i, p_len - len(p):] = np.arange(len(p))
    prefill, decode = _compiled(cfg, s, b, u, p_len, total, mesh, tuple(rules))
    if mesh is not None:
        def traced(fn):  # activation constraints apply while the step is traced
            def call(*args):
                with sharding_rules(mesh, rules):
                    return fn(*args)
            return call
        prefill, decode = traced(prefill), traced(decode)
    key = jax.random.PRNGKey(s.seed)
    key, sub = jax.random.split(key)
    token, cache = prefill(params, jnp.asarray(tokens), jnp.asarray(seg), jnp.asarray(positions),
                           jnp.asarray(rows), sub)
    out: list[list[int]] = [[] for _ in range(b)]
    done = np.zeros(b, bool)
    for step in range(s.max_new_tokens):
        host = np.asarray(token)
        for i in range(b):
            if done[i]:
                continue
            if int(host[i]) in stop_ids:
                done[i] = True
                continue
            out[i].append(int(host[i]))
            if stop_check is not None and stop_check(i, out[i]):
                done[i] = True
        if done.all() or step == s.max_new_tokens - 1:
            break
        key, sub = jax.random.split(key)
        token, cache = decode(params, cache, token, p_len + step, sub)
    return out


def generate_text(cfg: ModelConfig, params, tokenizer, prompts: Sequence[str], s: SamplingConfig,
                  stop: Sequence[str] = ()) -> list[str]:
    """Text in, text out: stops at EOS or the first stop string (removed from the completion)."""
    encoded = [tokenizer.encode(p) for p in prompts]

    def stop_check(i, toks):
        text = tokenizer.decode(toks)
        return any(x in text for x in stop)

    outs = generate(cfg, params, encoded, s, stop_ids=(tokenizer.eos_id,), stop_check=stop_check if stop else None)
    return [truncate(tokenizer.decode(o), stop) for o in outs]


def truncate(text: str, stop: Sequence[str]) -> str:
    """Cuts text at the earliest stop string."""
    cut = min((text.find(x) for x in stop if x in text), default=len(text))
    return text[:cut]
