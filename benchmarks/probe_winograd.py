"""Would Winograd's F(2x2, 3x3) make the large batch's forward faster on XLA:CPU? (item 25)

    PYTHONPATH=. python benchmarks/probe_winograd.py [--repeats N] [--out FILE]

The large batch (256, 32, 16, 16) x (32, 32, 3, 3) is the one shape class whose float32 step
sits at the 1.5x-of-PyTorch target, and its matrix products already run near XLA's matrix
kernel's speed. Winograd's minimal filtering (Lavin and Gray, 2016) computes each 2x2 block of
outputs from a 4x4 block of inputs with 16 products instead of 36: 2.25x fewer multiplications,
paid for with additions before and after them (the input and output transforms). Exact in exact
arithmetic, so in float64 it agrees with the native convolution up to rounding.

This script checks that agreement, then times the float32 forward interleaved in one process:
as Winograd (16 batched products (tiles x C) . (C x O)) over the whole batch and in blocks of
images, as the op (``impl``) and as native ``lax``. On the Zen 3 EPYC of item 25 of
``benchmarks/README.md`` every variant was slower than the op's forward on this shape (1.4x in
blocks of 16 images, 3.4x over the whole batch); its products took less time than the op's, its
transforms more than that saved. (The fifteenth session's whole-batch version, with the backward
pass, made the step 1.37x slower on a Zen 1: "Where the time goes" there.) With 32 features the
transforms weigh 4-16x more against the products than with the 128-512 features where ``impl``'s
own ``winograd`` now serves (item 31, whose filter transform is sums of slices: the ``einsum``
below made 16 transposed copies of the transformed filter with 512 features).
"""

import argparse
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

import impl
from convgrad import bench
from convgrad.io import write_atomic
from impl import _formulations

# F(2x2, 3x3) for correlation (the convolution of deep learning): Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A
# for a 4x4 input tile d and a 3x3 filter g; the matrices and their sums as the op's ``winograd``.
B_T, G, A_T = _formulations.WINOGRAD_B_T, _formulations.WINOGRAD_G, _formulations.WINOGRAD_A_T
_combine = _formulations._combination
SHAPE = "large batch 3x3"
# Images per loop step of the blocked variants.
BLOCKS = (4, 16)


def winograd_forward(lhs: jax.Array, rhs: jax.Array, block: int | None = None) -> jax.Array:
    """``lax.conv_general_dilated(lhs, rhs, (1, 1), ((1, 1), (1, 1)))`` by Winograd F(2x2, 3x3).

    NCHW input with even H and W, OIHW 3x3 filter, stride 1, one row and column of zeros on every
    side (SAME). Channels last inside, so that each product contracts the minor axis. ``block``:
    images per step of a ``lax.map`` over the batch (it must divide it), so that each step's
    transformed tiles and products stay in cache; None: the whole batch at once.
    """
    if lhs.ndim != 4 or rhs.ndim != 4 or rhs.shape[2:] != (3, 3) or lhs.shape[1] != rhs.shape[1]:
        raise ValueError(f"winograd_forward takes (N, C, H, W) and (O, C, 3, 3), got {lhs.shape} "
                         f"and {rhs.shape}")
    batch, features, height, width = lhs.shape
    if height % 2 or width % 2:
        raise ValueError(f"winograd_forward takes even planes, got {height}x{width}")
    block = block or batch
    if batch % block:
        raise ValueError(f"block (={block}) must divide the batch ({batch})")
    outs, rows, cols = rhs.shape[0], height // 2, width // 2
    g = jnp.asarray(G, lhs.dtype)
    filters = jnp.einsum("xa,ocab,yb->xyco", g, rhs, g).reshape(16, features, outs)

    def images(padded: jax.Array) -> jax.Array:             # (block, H + 2, W + 2, C)
        # Input transform, one axis at a time: V[ξ, ν] = Σ_ab Bᵀ[ξ, a] Bᵀ[ν, b] d[a, b] per tile.
        strips = [padded[:, a:a + 2 * rows:2] for a in range(4)]       # (block, rows, W + 2, C)
        strips = [_combine(strips, B_T[xi]) for xi in range(4)]
        tiles = jnp.stack([_combine([s[:, :, b:b + 2 * cols:2] for b in range(4)], B_T[nu])
                           for s in strips for nu in range(4)])      # (16, block, rows, cols, C)
        products = lax.dot_general(tiles.reshape(16, -1, features), filters,
                                   (((2,), (1,)), ((0,), (0,))), precision=lax.Precision.HIGHEST)
        products = products.reshape(4, 4, block, rows, cols, outs)
        # Output transform: Y[α, β] = Σ_ξν Aᵀ[α, ξ] Aᵀ[β, ν] M[ξ, ν].
        halves = [_combine([products[xi] for xi in range(4)], A_T[alpha]) for alpha in range(2)]
        out = jnp.stack([jnp.stack([_combine([h[nu] for nu in range(4)], A_T[beta])
                                    for beta in range(2)], axis=-2) for h in halves], axis=2)
        return out.reshape(block, height * width, outs)           # from (block, rows, 2, cols, 2, O)

    padded = jnp.pad(jnp.transpose(lhs, (0, 2, 3, 1)), ((0, 0), (1, 1), (1, 1), (0, 0)))
    if block == batch:
        out = images(padded)
    else:
        out = lax.map(images, padded.reshape(batch // block, block, *padded.shape[1:]))
    return jnp.swapaxes(out.reshape(batch, height * width, outs), 1, 2).reshape(
        batch, outs, height, width)


def native_forward(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    """The same convolution by native ``lax`` (the reference)."""
    return lax.conv_general_dilated(lhs, rhs, (1, 1), ((1, 1), (1, 1)),
                                    precision=lax.Precision.HIGHEST)


def float64_error(shape: bench.Shape) -> dict[str, float]:
    """Winograd's largest absolute and relative error against native, in float64."""
    lhs, rhs = bench.make_inputs(shape, "float64")
    want = jax.jit(native_forward)(lhs, rhs)
    got = jax.jit(winograd_forward)(lhs, rhs)
    error = float(jnp.max(jnp.abs(got - want)))
    return {"max_abs_error": error, "max_rel_error": error / float(jnp.max(jnp.abs(want)))}


def _timed(function: Any, *args: jax.Array) -> bench.Step:
    compiled = jax.jit(function).lower(*args).compile()
    return lambda: jax.block_until_ready(compiled(*args))


def forward_seconds(shape: bench.Shape, repeats: int) -> dict[str, float]:
    """The float32 forward as Winograd (whole and in blocks), the op and native, interleaved:
    median seconds each."""
    lhs, rhs = bench.make_inputs(shape, "float32")
    kwargs = shape.lax_kwargs()
    return bench.interleaved_medians({
        "Winograd, whole batch": _timed(winograd_forward, lhs, rhs),
        **{f"Winograd, {block} images per step": _timed(
            lambda x, f, block=block: winograd_forward(x, f, block), lhs, rhs)
           for block in BLOCKS},
        "ours": _timed(lambda x, f: impl.conv_general_dilated(x, f, **kwargs), lhs, rhs),
        "native": _timed(lambda x, f: lax.conv_general_dilated(x, f, **kwargs), lhs, rhs)},
        repeats)


def markdown(errors: dict[str, float], forwards: dict[str, float], repeats: int) -> str:
    """The probe's report."""
    environment = bench.environment()
    lines = [bench.device_line(environment, python=False),
             f"{SHAPE}'s forward (float32, medians of {repeats} interleaved repeats in one "
             "process). Winograd F(2x2, 3x3) against native in float64: largest absolute error "
             f"{errors['max_abs_error']:.2e}, relative to the largest output "
             f"{errors['max_rel_error']:.2e}.", "",
             "| forward | ms | / ours |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {seconds * 1e3:.1f} | {seconds / forwards['ours']:.2f} |"
              for name, seconds in forwards.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats (={args.repeats}) must be at least 1")
    jax.config.update("jax_enable_x64", True)  # for the float64 check
    shape = next(s for s in bench.model_suite() if s.name == SHAPE)
    errors = float64_error(shape)
    text = markdown(errors, forward_seconds(shape, args.repeats), args.repeats)
    print(text, end="")
    if args.out:
        write_atomic(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
