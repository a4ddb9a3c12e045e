"""Bytes each device sends per attention layer under context parallelism, read from the compiled
program, next to the ring's theoretical volume; and when the ring is bandwidth-bound.

    python bench/context_collectives.py

For the DeepSeek-Coder 6.7B (32 query and 32 K/V heads) and StarCoder2 7B (36 query, 4 K/V heads)
attention shapes, head_dim 128, bfloat16, one row per device at 64K and 128K tokens with context
parallelism 4 and 8: the ring attention of one layer, forward and backward, is compiled for that
many fake CPU devices (nothing is allocated) and its collective-permutes are summed from the HLO
(each loop body's sends times the loop's trip count). Theory for a full ring of C devices, each
holding T/C tokens: forward, C-1 sends of the K and V blocks (2 x T/C x KV x D x 2 bytes) plus
their segment ids and positions (2 x T/C x 4 bytes); backward, C-1 sends of the K and V gradients
(same size as K and V). The program keeps each forward step's received block for the backward
pass rather than sending it around again.

The ring whose blocks run through our Pallas kernel (`context_flash.py`, what `auto` picks on TPU)
is compiled for the TPU too. Its backward is a custom VJP that keeps only the device's own K/V:
C-1 sends of K, V and segment ids forward, C-1 again backward, and the K/V gradients travel with
them as float32 accumulators (C-1 hops, then one send home).
"""

from __future__ import annotations

import os
import re
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P

from jaxcoder.parallel.context import sharded_ring_attention  # noqa: E402
from jaxcoder.parallel.mesh import make_mesh  # noqa: E402

SHAPES = {"deepseek-coder 6.7B": (32, 32, 128), "starcoder2 7B": (36, 4, 128)}  # (heads, kv_heads, head_dim)
_BYTES = {"bf16": 2, "f32": 4, "s32": 4, "u32": 4, "pred": 1, "f16": 2, "s8": 1, "u8": 1}
# Peak dense bf16 FLOP/s and one link's bandwidth each way (public specifications: Google Cloud's TPU
# v5p page, 459 TFLOP/s and 4,800 Gbps of ICI per chip over 6 links; NVIDIA's H100 SXM datasheet,
# 989 TFLOP/s and 900 GB/s of NVLink per GPU, 450 GB/s each way).
HARDWARE = {"TPU v5p (ICI link)": (459e12, 100e9), "H100 SXM (NVLink)": (989e12, 450e9)}


def shape_bytes(text: str) -> int:
    m = re.match(r"\(?(\w+)\[([\d,]*)\]", text)
    dims = [int(x) for x in m.group(2).split(",") if x] if m else []
    n = 1
    for d in dims:
        n *= d
    return n * _BYTES[m.group(1)] if m else 0


def sent_bytes(hlo: str) -> int:
    """Bytes one device sends through collective-permutes in the entry computation, loops unrolled
    by their known trip counts (conditionals counted at their largest branch)."""
    comps: dict[str, list[str]] = {}
    entry, name = None, None
    for line in hlo.splitlines():
        head = re.match(r"^(ENTRY )?%?([\w.\-]+) .*\{$", line)
        if head and not line.startswith(" "):
            name = head.group(2)
            comps[name] = []
            entry = name if head.group(1) else entry
        elif name and line.startswith(" "):
            comps[name].append(line)

    def trip_count(line: str) -> int:
        """XLA CPU states a loop's trip count; the TPU compiler's loops compare the counter with
        their condition's one integer constant."""
        known = re.search(r'"known_trip_count":\{"n":"(\d+)"', line)
        if known:
            return int(known.group(1))
        cond = re.search(r"condition=%?([\w.\-]+)", line)
        limits = [int(c) for c in re.findall(r"s32\[\]\S* constant\((\d+)\)", "\n".join(comps.get(cond.group(1), [])))]
        if len(limits) != 1:
            raise ValueError(f"cannot tell the trip count of {line[:80]}")
        return limits[0]

    def total(comp: str, seen=()) -> int:
        out = 0
        for line in comps.get(comp, []):
            rhs = line.split("=", 1)[1].strip() if "=" in line else ""
            if re.search(r"\bcollective-permute(-start)?\(", rhs):
                out += shape_bytes(rhs)
            body = re.search(r"body=%?([\w.\-]+)", line)
            if body and body.group(1) not in seen:
                out += trip_count(line) * total(body.group(1), (*seen, comp))
            for called in re.findall(r"(?:to_apply|calls)=%?([\w.\-]+)", line):
                if called not in seen:
                    out += total(called, (*seen, comp))
            branches = re.search(r"branch_computations=\{([^}]*)\}", line)
            if branches:
                out += max(total(b.strip().lstrip("%"), (*seen, comp)) for b in branches.group(1).split(","))
        return out

    return total(entry)


def measure(heads: int, kv: int, d: int, tokens: int, c: int, devices, kernel: bool = False) -> int:
    mesh = make_mesh({"context": c, "data": 1}, devices=devices[:c])
    tok = NamedSharding(mesh, P(None, "context"))
    act = NamedSharding(mesh, P(None, "context", None, None))
    q = jax.ShapeDtypeStruct((1, tokens, heads, d), jnp.bfloat16, sharding=act)
    k = jax.ShapeDtypeStruct((1, tokens, kv, d), jnp.bfloat16, sharding=act)
    ids = jax.ShapeDtypeStruct((1, tokens), jnp.int32, sharding=tok)
    specs = (P(None, "context", None, None), P(None, "context", None, None), P(None, "context"))

    target = {"platform": "tpu", "interpret": False, "device_kind": devices[0].device_kind} if kernel else None

    def loss(q, k, v, seg, pos):
        o = sharded_ring_attention(q, k, v, q_segment_ids=seg, kv_segment_ids=seg, q_positions=pos,
                                   kv_positions=pos, mesh=mesh, specs=specs, kernel_options=target)
        return o.astype(jnp.float32).sum()

    step = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    with jax.default_matmul_precision("default"):
        return sent_bytes(step.lower(q, k, k, ids, ids).compile().as_text())


def theory(kv: int, d: int, tokens: int, c: int) -> int:
    chunk = tokens // c
    return (c - 1) * (2 * chunk * kv * d * 2 + 2 * chunk * 4) + (c - 1) * 2 * chunk * kv * d * 2


def kernel_theory(kv: int, d: int, tokens: int, c: int) -> int:
    chunk = tokens // c
    return 2 * (c - 1) * (2 * chunk * kv * d * 2 + chunk * 4) + c * 2 * chunk * kv * d * 4


def targets() -> dict:
    """Fake CPU devices, and a TPU v5p slice's devices when the TPU compiler is installed (the
    `tpu` extra): XLA's CPU collectives send bfloat16 as float32, the TPU's send what it is given."""
    out = {"CPU (8 fake devices)": jax.devices()}
    try:
        from jaxcoder.parallel.topology import tpu_devices

        out["TPU v5p:2x2x2 (ahead of time)"] = tpu_devices("v5p:2x2x2")
    except Exception as e:  # noqa: BLE001 - no libtpu here: the CPU column alone
        print(f"(no TPU compile: {e})", file=sys.stderr)
    return out


def main() -> None:
    compiled_for = targets()
    print("| attention | tokens | context | ring theory | " + " | ".join(f"compiled for {t}" for t in compiled_for)
          + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(compiled_for))
    for label, (heads, kv, d) in SHAPES.items():
        for tokens in (65536, 131072):
            for c in (4, 8):
                want = theory(kv, d, tokens, c)
                got = [measure(heads, kv, d, tokens, c, devices) for devices in compiled_for.values()]
                print(f"| {label} | {tokens // 1024}K | {c} | {want / 2**20:,.1f} MiB | "
                      + " | ".join(f"{g / 2**20:,.1f} MiB ({g / want:.2f}x)" for g in got) + " |", flush=True)
    tpu = [devices for name, devices in compiled_for.items() if name.startswith("TPU")]
    if tpu:
        print("\nBlocks through our Pallas kernel (custom VJP ring), compiled for the TPU:\n")
        print("| attention | tokens | context | kernel ring theory | compiled for TPU v5p:2x2x2 |")
        print("|---|---:|---:|---:|---:|")
        for label, (heads, kv, d) in SHAPES.items():
            for tokens in (65536, 131072):
                for c in (4, 8):
                    want = kernel_theory(kv, d, tokens, c)
                    got = measure(heads, kv, d, tokens, c, tpu[0], kernel=True)
                    print(f"| {label} | {tokens // 1024}K | {c} | {want / 2**20:,.1f} MiB | "
                          f"{got / 2**20:,.1f} MiB ({got / want:.2f}x) |", flush=True)
    print("\nA ring step hides its transfer when the block's attention takes longer than sending K and V:"
          "\n2 x (T/C)^2 x H x D useful FLOPs vs 4 x (T/C) x KV x D bytes, i.e. T/C >= 2 x (KV/H) x FLOP/s / (B/s).")
    print("\n| hardware | attention | tokens per device T/C at which the ring stops being bandwidth-bound |")
    print("|---|---|---:|")
    for hw, (flops, bw) in HARDWARE.items():
        for label, (heads, kv, _) in SHAPES.items():
            print(f"| {hw} | {label} | {2 * kv / heads * flops / bw:,.0f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
