"""KV-cache generation: greedy decoding equals re-running the full forward token by token, and equals
transformers' greedy `generate` on the exported model; sampling respects top-k / top-p."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_params

from jaxcoder.eval.generate import SamplingConfig, generate, sample_logits
from jaxcoder.model import functional as F
from jaxcoder.model.presets import preset

LINES = {"deepseek-coder-tiny": {}, "starcoder2-tiny": {"sliding_window": 12}, "santacoder-tiny": {}}


def greedy_reference(cfg, params, prompt, n):
    """No cache: the whole sequence re-run for every token (a fixed-size buffer; causal attention
    makes the unused tail irrelevant)."""
    buf = np.zeros((1, len(prompt) + n), np.int32)
    buf[0, :len(prompt)] = prompt
    fwd = jax.jit(lambda p, t: F.forward(cfg, p, t))
    for i in range(len(prompt), len(prompt) + n):
        buf[0, i] = int(jnp.argmax(fwd(params, jnp.asarray(buf))[0, i - 1]))
    return buf[0, len(prompt):].tolist()


@pytest.mark.parametrize("name", sorted(LINES))
def test_cached_greedy_equals_full_forward(name):
    cfg = preset(name, dtype="float32", **LINES[name])
    params = random_params(F.init_params(cfg, 0), seed=2, scale=0.3)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(4, cfg.vocab_size, n).tolist() for n in (5, 17, 9)]  # ragged: left padding
    out = generate(cfg, params, prompts, SamplingConfig(max_new_tokens=20))
    for prompt, got in zip(prompts, out, strict=True):
        assert got == greedy_reference(cfg, params, prompt, 20)


@pytest.mark.parametrize("name", sorted(LINES))
def test_cached_greedy_equals_transformers_generate(hf, tmp_path, name):
    import torch
    from transformers import AutoModelForCausalLM

    from jaxcoder.export.hf_io import export_hf

    cfg = preset(name, dtype="float32", **LINES[name])
    params = random_params(F.init_params(cfg, 0), seed=3, scale=0.3)
    export_hf(cfg, params, tmp_path, special_tokens={"bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0})
    model = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    prompt = np.random.default_rng(1).integers(4, cfg.vocab_size, 11).tolist()
    with torch.no_grad():
        ref = model.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False, eos_token_id=None,
                             pad_token_id=0)[0, len(prompt):].tolist()
    assert generate(cfg, params, [prompt], SamplingConfig(max_new_tokens=24))[0] == ref


def test_stop_ids_and_stop_check():
    cfg = preset("deepseek-coder-tiny", dtype="float32")
    params = random_params(F.init_params(cfg, 0), seed=4, scale=0.3)
    prompt = [5, 6, 7]
    full = generate(cfg, params, [prompt], SamplingConfig(max_new_tokens=12))[0]
    stop_at = full[4]
    cut = generate(cfg, params, [prompt], SamplingConfig(max_new_tokens=12), stop_ids=(stop_at,))[0]
    assert cut == full[:full.index(stop_at)]
    short = generate(cfg, params, [prompt], SamplingConfig(max_new_tokens=12), stop_check=lambda i, t: len(t) >= 3)[0]
    assert short == full[:3]


def test_top_k_and_top_p_restrict_the_support():
    logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))
    keys = jax.random.split(jax.random.PRNGKey(0), 400)

    def support(s: SamplingConfig) -> set[int]:  # 400 draws in one program, not 400 dispatches
        return set(np.asarray(jax.jit(jax.vmap(lambda k: sample_logits(logits, k, s)[0]))(keys)).tolist())

    assert support(SamplingConfig(temperature=1.0, top_k=2)) == {0, 1}
    # 0.75, not 0.8: {0, 1} holds 0.8 exactly in reals, within a float32 rounding either side here.
    assert support(SamplingConfig(temperature=1.0, top_p=0.75)) == {0, 1}
    assert support(SamplingConfig(temperature=1.0)) == {0, 1, 2, 3}


def test_inverse_cdf_sampling_draws_the_softmax_distribution():
    """20,000 draws: every token's frequency within 5 standard errors of its probability; tokens
    with probability 0 (-inf logits, as top-k / top-p leave them) never drawn."""
    from jaxcoder.eval.generate import inverse_cdf_sample

    probs = np.array([0.4, 0.0, 0.25, 1e-3, 0.2, 0.0, 0.149])
    logits = jnp.asarray(np.where(probs > 0, np.log(np.maximum(probs, 1e-30)), -np.inf), jnp.float32)
    draws = 20_000
    got = np.asarray(jax.jit(inverse_cdf_sample)(jnp.broadcast_to(logits, (draws, 7)), jax.random.PRNGKey(3)))
    freq = np.bincount(got, minlength=7) / draws
    p = probs / probs.sum()
    assert freq[p == 0].sum() == 0
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / draws) + 1e-12), (freq, p)


def test_prompts_shared_across_rows_and_batches_of_one_shape():
    """Rows repeating a prompt share its prefill and equal generating it alone; `batches` gives
    every batch one shape (the last topped up), so many batches compile one program pair."""
    from jaxcoder.eval.generate import _compiled, batches

    cfg = preset("starcoder2-tiny", dtype="float32", sliding_window=12)
    params = random_params(F.init_params(cfg, 0), seed=6, scale=0.3)
    rng = np.random.default_rng(4)
    a, b, c = (rng.integers(4, cfg.vocab_size, n).tolist() for n in (7, 11, 40))
    s = SamplingConfig(max_new_tokens=10)
    alone = {tuple(p): generate(cfg, params, [p], s)[0] for p in (a, b, c)}
    assert generate(cfg, params, [a, b, a, a], s) == [alone[tuple(p)] for p in (a, b, a, a)]
    jobs = [a] * 3 + [b] * 3 + [c] * 3  # n = 3 samples of each of three problems
    planned = list(batches(jobs, 4))
    assert [len(chunk) for _, chunk, _ in planned] == [4, 4, 4] and planned[-1][1] == [c, c, c, c]
    assert all(kw == {"prompt_len": 64, "prefill_rows": 2} for _, _, kw in planned)
    misses = _compiled.cache_info().misses
    outs = [o for offset, chunk, kw in planned for o in generate(cfg, params, chunk, s, **kw)]
    assert _compiled.cache_info().misses == misses + 1
    assert outs[:9] == [alone[tuple(p)] for p in jobs]
    with pytest.raises(ValueError, match="prefill_rows 1 cannot hold .* 2 distinct prompts"):
        generate(cfg, params, [a, b], s, prefill_rows=1)


def test_the_nucleus_is_the_sorted_prefix_reaching_top_p():
    """Against a float64 sort: the same kept tokens, ties and -inf included; a row may differ only
    where the kept mass is within float32 rounding of top_p."""
    from jaxcoder.eval.generate import nucleus

    rng = np.random.default_rng(0)
    kept_by = jax.jit(nucleus)  # top_p traced: one program per vocabulary size (eagerly, one per call)
    for case in range(100):
        vocab, p = int(rng.choice([2, 3, 37, 1000, 2999])), float(rng.choice([0.1, 0.5, 0.9, 0.95, 0.999]))
        logits = (rng.standard_normal((4, vocab)) * rng.choice([0.1, 1, 5, 30])).astype(np.float32)
        if case % 5 == 0:
            logits[:, : vocab // 2] = np.round(logits[:, : vocab // 2])  # ties at the edge
        if case % 7 == 0:
            logits[:, 0] = -np.inf  # a token top-k removed
        got = np.asarray(kept_by(jnp.asarray(logits), p))
        for row, kept in zip(logits.astype(np.float64), got, strict=True):
            probs = np.exp(row - row.max())
            probs /= probs.sum()
            ordered = np.sort(row)[::-1]
            cutoff = ordered[min(int(np.sum(np.cumsum(np.sort(probs)[::-1]) < p)), vocab - 1)]
            want = row >= cutoff
            assert np.array_equal(kept, want) or abs(probs[kept].sum() - p) < 1e-6, (case, kept.sum(), want.sum())
            assert kept.any()


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")
def test_sharded_generation_equals_single_device():
    from jaxcoder.eval.generate import place
    from jaxcoder.parallel.mesh import make_mesh

    cfg = preset("starcoder2-tiny", dtype="float32", sliding_window=12)
    params = random_params(F.init_params(cfg, 0), seed=5, scale=0.3)
    rng = np.random.default_rng(2)
    prompts = [rng.integers(4, cfg.vocab_size, n).tolist() for n in (6, 13, 9, 4)]
    single = generate(cfg, params, prompts, SamplingConfig(max_new_tokens=12))
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    sharded = generate(cfg, place(cfg, params, mesh), prompts, SamplingConfig(max_new_tokens=12), mesh=mesh)
    assert sharded == single


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")
def test_a_context_parallel_run_generates_with_its_context_devices_as_data():
    """Evaluating a run trained with mesh.context folds that axis into data parallelism (its ring
    is for whole load-balanced rows, not prompts and one-token decode steps); a context mesh
    passed to generate is refused."""
    from jaxcoder.eval.generate import place
    from jaxcoder.parallel.mesh import MeshConfig, make_mesh

    trained = MeshConfig(data=1, fsdp=2, context=4, dcn_data=1)
    folded = trained.without_context()
    assert (folded.data, folded.fsdp, folded.context, folded.dcn_data, folded.dcn_context) == (4, 2, 1, 1, 1)
    assert MeshConfig(data=-1, context=2).without_context().sizes()["data"] == -1
    cfg = preset("deepseek-coder-tiny", dtype="float32")
    params = random_params(F.init_params(cfg, 0), seed=5, scale=0.3)
    prompts = [np.random.default_rng(3).integers(4, cfg.vocab_size, n).tolist() for n in (5, 11, 7, 3)]
    single = generate(cfg, params, prompts, SamplingConfig(max_new_tokens=8))
    mesh = make_mesh(folded.sizes())
    assert generate(cfg, place(cfg, params, mesh), prompts, SamplingConfig(max_new_tokens=8), mesh=mesh) == single
    context_mesh = make_mesh(trained.sizes())
    with pytest.raises(ValueError, match=r"generation takes a mesh without a context axis \(this one has context=4\)"):
        generate(cfg, place(cfg, params, context_mesh), prompts, SamplingConfig(max_new_tokens=8), mesh=context_mesh)


def test_learned_positions_allow_every_sequence_that_fits():
    """The limit is the longest real position, not the power-of-two padded prompt buffer."""
    cfg = preset("santacoder-tiny", dtype="float32", max_seq_len=64)
    params = random_params(F.init_params(cfg, 0), seed=3, scale=0.3)
    prompt = np.random.default_rng(1).integers(4, cfg.vocab_size, 40).tolist()  # padded to 64 slots
    got = generate(cfg, params, [prompt], SamplingConfig(max_new_tokens=24))[0]  # 40 + 24 = 64 positions
    assert got == greedy_reference(cfg, params, prompt, 24)
    with pytest.raises(ValueError, match=r"reaches position 64, past model.max_seq_len 64"):
        generate(cfg, params, [prompt], SamplingConfig(max_new_tokens=25))
