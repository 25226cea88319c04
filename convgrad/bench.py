"""Benchmarks: jit(grad) of the op against native lax autodiff and PyTorch's CPU autograd.

A shape suite like real models (ResNet 3x3/1x1 at stride 1 and 2, depthwise and grouped,
dilated, 1-D audio, 3-D video, large batch). Every step is forward + backward of
``sum(sin(conv(lhs, rhs)))`` with respect to ``(lhs, rhs)``. Repeats are interleaved (each repeat
runs every implementation once, in turn) so that load from other processes hits all of them
alike; reports give medians and ratios measured in one run. Used by ``convgrad bench`` and the
scripts in ``benchmarks/``.
"""

import argparse
import atexit
import dataclasses
import importlib.metadata
import importlib.util
import itertools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import impl
from convgrad import torch_worker
from convgrad.io import write_atomic
from impl import _formulations, _host

Step = Callable[[], Any]

# Names a Python interpreter with PyTorch to run PyTorch's steps in (``TorchWorker``), where the
# benchmark's own Python has none; ``convgrad bench --torch-python`` sets it.
TORCH_PYTHON_VARIABLE = "CONVGRAD_TORCH_PYTHON"

# Issue 6's target against PyTorch CPU: ours/torch at most this on every kind of shape.
TORCH_TARGET = 1.5


@dataclasses.dataclass(frozen=True)
class Shape:
    """One benchmark case in the default layouts: lhs (N, C, *S), rhs (O, C // groups, *K).

    Padding is symmetric per spatial axis (``pad``), so the same case maps onto PyTorch.
    """

    name: str
    kind: str
    lhs_shape: tuple[int, ...]
    rhs_shape: tuple[int, ...]
    stride: int = 1
    pad: int = 0
    dilation: int = 1
    groups: int = 1

    def lax_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``conv_general_dilated`` for this case."""
        n_spatial = len(self.lhs_shape) - 2
        return dict(window_strides=(self.stride,) * n_spatial,
                    padding=((self.pad, self.pad),) * n_spatial,
                    rhs_dilation=(self.dilation,) * n_spatial,
                    feature_group_count=self.groups)


def model_suite() -> list[Shape]:
    """Shapes from real models, sized so that one step takes ~10-200 ms on two CPU cores."""
    return [
        Shape("resnet 3x3 s1", "dense 2-D", (16, 64, 56, 56), (64, 64, 3, 3), pad=1),
        Shape("resnet 3x3 s2", "dense 2-D", (16, 128, 56, 56), (128, 128, 3, 3), stride=2, pad=1),
        Shape("resnet 1x1 s1", "dense 2-D", (16, 256, 28, 28), (64, 256, 1, 1)),
        Shape("resnet 1x1 s2", "dense 2-D", (16, 256, 56, 56), (512, 256, 1, 1), stride=2),
        Shape("grouped g=8", "grouped", (16, 64, 56, 56), (64, 8, 3, 3), pad=1, groups=8),
        Shape("resnext g=32", "grouped", (16, 128, 28, 28), (128, 4, 3, 3), pad=1, groups=32),
        Shape("depthwise 3x3", "depthwise", (16, 64, 56, 56), (64, 1, 3, 3), pad=1, groups=64),
        Shape("depthwise 3x3 s2", "depthwise", (16, 96, 56, 56), (96, 1, 3, 3), stride=2, pad=1,
              groups=96),
        Shape("dilated 3x3 d2", "dilated", (16, 64, 28, 28), (64, 64, 3, 3), pad=2, dilation=2),
        Shape("audio 1-D k5 s2", "1-D", (8, 64, 8000), (128, 64, 5), stride=2, pad=2),
        Shape("video 3-D 3x3x3", "3-D", (2, 32, 8, 28, 28), (32, 32, 3, 3, 3), pad=1),
        Shape("large batch 3x3", "large batch", (256, 32, 16, 16), (32, 32, 3, 3), pad=1),
    ]


def small_planes() -> list[Shape]:
    """Dense 2-D shapes on small planes beyond the suite's large batch, for the A/B scripts: where
    the CPU rules for small planes and the block sizes of the per-image loops choose."""
    return [
        Shape("64 features 16x16", "2-D", (128, 64, 16, 16), (64, 64, 3, 3), pad=1),
        Shape("128 features 14x14", "2-D", (64, 128, 14, 14), (128, 128, 3, 3), pad=1),
        Shape("32 features 12x12", "2-D", (256, 32, 12, 12), (32, 32, 3, 3), pad=1),
        Shape("16 features 32x32", "2-D", (64, 16, 32, 32), (16, 16, 3, 3), pad=1),
        Shape("32 features 28x28", "2-D", (64, 32, 28, 28), (32, 32, 3, 3), pad=1),
    ]


def many_features() -> list[Shape]:
    """Planes with many features (ResNet's and wide ResNets' last stages, VGG's early ones), for
    the A/B scripts: where the CPU rules for many features on small planes choose (jaxlib
    0.12.1), and where a filter gradient's columns exceed one loop step's bytes."""
    return [
        Shape("256 features 56x56", "2-D", (4, 256, 56, 56), (256, 256, 3, 3), pad=1),
        Shape("128 features 112x112", "2-D", (2, 128, 112, 112), (128, 128, 3, 3), pad=1),
        Shape("128 features 7x7", "2-D", (64, 128, 7, 7), (128, 128, 3, 3), pad=1),
        Shape("256 features 7x7", "2-D", (64, 256, 7, 7), (256, 256, 3, 3), pad=1),
        Shape("512 features 7x7", "2-D", (32, 512, 7, 7), (512, 512, 3, 3), pad=1),
        Shape("640 features 8x8", "2-D", (16, 640, 8, 8), (640, 640, 3, 3), pad=1),
        Shape("512 features 14x14", "2-D", (16, 512, 14, 14), (512, 512, 3, 3), pad=1),
    ]


def three_dimensional() -> list[Shape]:
    """3-D shapes beyond the suite's video, for the A/B scripts: where the CPU rules for folded
    3-D convolutions choose, among them the 1x3x3 convolutions of (2+1)-D video networks (valid
    padding, as ``Shape`` pads every axis alike)."""
    return [
        Shape("3-D 64 features 14x14", "3-D", (2, 64, 8, 14, 14), (64, 64, 3, 3, 3), pad=1),
        Shape("3-D 16 features 32x32", "3-D", (2, 16, 16, 32, 32), (16, 16, 3, 3, 3), pad=1),
        Shape("3-D stride 2", "3-D", (2, 32, 16, 56, 56), (64, 32, 3, 3, 3), stride=2, pad=1),
        Shape("3-D 1x3x3 valid", "3-D", (4, 64, 8, 28, 28), (64, 64, 1, 3, 3)),
        Shape("3-D 1x3x3 64 features 56x56", "3-D", (2, 64, 8, 56, 56), (64, 64, 1, 3, 3)),
        Shape("3-D 1x3x3 128 features 28x28", "3-D", (2, 128, 8, 28, 28), (128, 128, 1, 3, 3)),
        Shape("3-D 1x3x3 stride 2", "3-D", (2, 64, 8, 56, 56), (128, 64, 1, 3, 3), stride=2),
        Shape("3-D 1x3x3 depthwise", "3-D", (2, 64, 8, 56, 56), (64, 1, 1, 3, 3), groups=64),
    ]


def unpadded() -> list[Shape]:
    """Dense 2-D shapes without padding (VALID), for the A/B scripts: where the CPU rule for
    convolutions without padding (``_unpadded_slow``) chooses, forward and filter gradient."""
    return [
        Shape("valid 3x3 64 features 28x28", "2-D", (32, 64, 28, 28), (64, 64, 3, 3)),
        Shape("valid 3x3 64 features 56x56", "2-D", (16, 64, 56, 56), (64, 64, 3, 3)),
        Shape("valid 3x3 128 features 14x14", "2-D", (16, 128, 14, 14), (128, 128, 3, 3)),
        Shape("valid 5x5 3 features 32x32", "2-D", (64, 3, 32, 32), (32, 3, 5, 5)),
        Shape("valid 3x3 stride 2", "2-D", (32, 64, 28, 28), (64, 64, 3, 3), stride=2),
        Shape("valid 3x3 dilation 2", "2-D", (32, 64, 28, 28), (64, 64, 3, 3), dilation=2),
    ]


def depthwise() -> list[Shape]:
    """Depthwise and small-group shapes beyond the suite, for the A/B scripts: where the CPU rules
    for formulations without matrix products (``grouped_taps``, ``batch_grouped_reduce``) choose,
    and how bfloat16 is computed there (item 36 of benchmarks/README.md)."""
    return [
        Shape("depthwise 3x3 valid", "depthwise", (16, 64, 56, 56), (64, 1, 3, 3), groups=64),
        Shape("depthwise 5x5", "depthwise", (16, 64, 28, 28), (64, 1, 5, 5), pad=2, groups=64),
        Shape("depthwise 3x3 multiplier 2", "depthwise", (16, 32, 56, 56), (64, 1, 3, 3), pad=1,
              groups=32),
        Shape("depthwise 1-D k9", "depthwise", (8, 128, 4000), (128, 1, 9), pad=4, groups=128),
        Shape("depthwise 3-D 3x3x3", "depthwise", (2, 64, 8, 28, 28), (64, 1, 3, 3, 3), pad=1,
              groups=64),
        Shape("grouped 4 per group", "grouped", (16, 64, 28, 28), (64, 4, 3, 3), pad=1,
              groups=16),
    ]


def one_dimensional() -> list[Shape]:
    """Strided 1-D shapes beyond the suite's audio (speech and audio front ends), for the A/B
    scripts: where the CPU rules for 1-D input gradients (lhs dilation 2) and filter gradients
    choose."""
    return [
        Shape("1-D k5 s2 128 features", "1-D", (8, 128, 4000), (128, 128, 5), stride=2, pad=2),
        Shape("1-D k3 s2 64 features", "1-D", (8, 64, 8000), (64, 64, 3), stride=2, pad=1),
        Shape("1-D k9 s2 32 to 64 features", "1-D", (16, 32, 16000), (64, 32, 9), stride=2,
              pad=4),
        Shape("1-D k5 s2 256 features", "1-D", (16, 256, 1000), (256, 256, 5), stride=2, pad=2),
        Shape("1-D k3 s2 16 to 32 features", "1-D", (4, 16, 32000), (32, 16, 3), stride=2,
              pad=1),
    ]


def rule_shapes() -> list[Shape]:
    """The suite and every set of shapes beyond it, each once: what the A/B scripts
    (``benchmarks/ab_constants.py``, ``ab_host_rules.py``, ``pieces.py``) choose from."""
    return [*model_suite(), *small_planes(), *many_features(), *one_dimensional(),
            *three_dimensional(), *unpadded(), *depthwise()]


def quick_suite() -> list[Shape]:
    """Tiny shapes for smoke tests: structure, not speed."""
    return [
        Shape("tiny 3x3", "dense 2-D", (2, 4, 8, 8), (4, 4, 3, 3), pad=1),
        Shape("tiny depthwise", "depthwise", (2, 4, 8, 8), (4, 1, 3, 3), pad=1, groups=4),
    ]


def grad_step(conv: Callable[..., jax.Array], shape: Shape) -> Callable[..., Any]:
    """jit(grad) of ``sum(sin(conv(lhs, rhs)))`` wrt (lhs, rhs): the step every row times."""
    kwargs = shape.lax_kwargs()

    def loss(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
        return jnp.sum(jnp.sin(conv(lhs, rhs, **kwargs)).astype(jnp.float32))

    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def make_inputs(shape: Shape, dtype: str) -> tuple[jax.Array, jax.Array]:
    """Seeded normal (lhs, rhs) of this shape and dtype."""
    keys = jax.random.split(jax.random.key(0), 2)
    return (jax.random.normal(keys[0], shape.lhs_shape).astype(dtype),
            jax.random.normal(keys[1], shape.rhs_shape).astype(dtype))


def program_text(compiled: Any) -> str:
    """The optimised program's instructions without source metadata, to compare two programs."""
    lines = []
    for line in compiled.as_text().splitlines():
        if " = " in line:
            line = re.sub(r",? metadata=\{[^}]*\}", "", line)
            lines.append(re.sub(r"stack_frame_id=\d+", "", line))
    return "\n".join(lines)


def _compiled(conv: Callable[..., jax.Array], shape: Shape, args: Sequence[jax.Array]
              ) -> tuple[Step, float, int | None, str]:
    """(step, compile seconds, temp bytes, program text) of jit(grad) for ``conv``."""
    start = time.perf_counter()
    compiled = grad_step(conv, shape).lower(*args).compile()
    seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    temp = None if memory is None else int(memory.temp_size_in_bytes)
    return (lambda: jax.block_until_ready(compiled(*args))), seconds, temp, program_text(compiled)


@dataclasses.dataclass(frozen=True)
class Timed:
    """What a step returns that timed itself (a step run in another process): its seconds."""

    seconds: float


def call_seconds(step: Step) -> float:
    """Seconds one call of ``step`` took: its own count where it gives one (``Timed``)."""
    start = time.perf_counter()
    result = step()
    elapsed = time.perf_counter() - start
    return result.seconds if isinstance(result, Timed) else elapsed


class TorchWorker:
    """PyTorch's steps in another Python (``convgrad/torch_worker.py`` run there as a script).

    Each step it returns sends one ``run`` request and returns the time the worker measured
    (``Timed``), so the pipe's round trip is not counted. Once such a step is garbage, the
    worker drops its tensors too (told with the next request), as an in-process step's are freed.
    Raises ``ValueError`` if ``python`` cannot be started or has no PyTorch.
    """

    def __init__(self, python: str, source: str = TORCH_PYTHON_VARIABLE) -> None:
        try:
            self._process = subprocess.Popen(
                [python, torch_worker.__file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True)
            self._dropped: list[int] = []  # steps that are garbage here, to drop there
        except OSError as error:
            raise ValueError(f"{source} (={python!r}) cannot be started: "
                             f"{error.strerror or error}") from error
        try:
            self.versions = self._request({"op": "versions"})
        except RuntimeError as error:
            self.close()
            raise ValueError(f"{source} (={python!r}): {error}") from error

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        dropped = self._dropped[:]
        del self._dropped[:len(dropped)]  # in place: the finalizers append to this list
        lines = [{"op": "drop", "ids": dropped}] * bool(dropped) + [request]  # drop: no answer
        try:
            self._process.stdin.write("".join(json.dumps(line) + "\n" for line in lines))
            self._process.stdin.flush()
        except BrokenPipeError:
            pass  # the worker has exited: its last words, if any, are read below
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the PyTorch worker exited (code {self._process.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def step(self, op: str, **fields: Any) -> Step:
        """A step that runs the worker's ``op`` step (``torch_worker.STEPS``, built from
        ``fields``; an array in ``values`` travels as a temporary ``.npy`` file) once and returns
        its ``Timed`` seconds."""
        if "values" in fields:
            with tempfile.TemporaryDirectory() as folder:  # read by the worker before it answers
                path = Path(folder) / "values.npy"
                np.save(path, fields.pop("values"))
                return self.step(op, path=str(path), **fields)
        index = self._request({"op": op, **fields})["id"]
        request = {"op": "run", "id": index}

        def run() -> Timed:
            return Timed(self._request(request)["seconds"])

        weakref.finalize(run, self._dropped.append, index)
        return run

    def close(self) -> None:
        """End the worker (closing its stdin ends its loop)."""
        for stream in (self._process.stdin, self._process.stdout):
            if stream is not None:
                stream.close()
        self._process.wait()


_WORKERS: dict[str, TorchWorker] = {}


def _worker_for(python: str, source: str = TORCH_PYTHON_VARIABLE) -> TorchWorker:
    if python not in _WORKERS:
        _WORKERS[python] = TorchWorker(python, source)
        atexit.register(_WORKERS[python].close)
    return _WORKERS[python]


def _torch_worker() -> TorchWorker | None:
    """This process's PyTorch worker where ``TORCH_PYTHON_VARIABLE`` names an interpreter."""
    python = os.environ.get(TORCH_PYTHON_VARIABLE)
    return _worker_for(python) if python else None


def use_torch_python(python: str, source: str = TORCH_PYTHON_VARIABLE) -> None:
    """Run PyTorch's steps in the interpreter ``python`` from now on, in this process and in the
    fresh ones it starts (``TORCH_PYTHON_VARIABLE``). Its worker starts here: ``ValueError``
    naming ``source`` (where ``python`` came from) if it cannot, or if that Python has no
    PyTorch."""
    _worker_for(python, source)
    os.environ[TORCH_PYTHON_VARIABLE] = python


def _torch_step(op: str, **fields: Any) -> Step | None:
    """PyTorch's ``op`` step (``torch_worker.STEPS``), in this process or in the worker of
    ``TORCH_PYTHON_VARIABLE``; ``None`` without PyTorch (an optional extra)."""
    worker = _torch_worker()
    if worker is not None:
        return worker.step(op, **fields)
    torch = _torch()
    return None if torch is None else torch_worker.STEPS[op](torch, **fields)


def _torch() -> Any:
    """The ``torch`` module in this process, or ``None`` without it (an optional extra) or where
    PyTorch runs in another Python (``TORCH_PYTHON_VARIABLE``)."""
    if os.environ.get(TORCH_PYTHON_VARIABLE) or importlib.util.find_spec("torch") is None:
        return None
    return torch_worker.load_torch()


def torch_conv(torch: Any, shape: Shape) -> Callable[..., Any]:
    """PyTorch's functional convolution of ``shape``'s rank (``conv1d``, ``conv2d``, ``conv3d``)."""
    return torch_worker.conv_function(torch, len(shape.lhs_shape) - 2)


def to_torch(torch: Any, array: jax.Array) -> Any:
    """``array`` as a PyTorch CPU tensor of the same dtype (bfloat16 through float32, exactly)."""
    return torch_worker.as_tensor(torch, array.astype(jnp.float32), str(array.dtype))


def torch_step(shape: Shape, dtype: str) -> Step | None:
    """PyTorch CPU autograd of the same loss (``torch_worker.conv_step``; in another Python where
    ``TORCH_PYTHON_VARIABLE`` names one), or ``None`` without torch (an optional extra)."""
    return _torch_step("step", shape=dataclasses.asdict(shape), dtype=dtype)


def loss_steps(out: jax.Array, with_torch: bool) -> dict[str, Step]:
    """The loss's own elementwise work on a convolution output ``out``, in each framework.

    XLA's jit(grad) of ``sum(sin(conv))`` evaluates ``cos(conv)`` (the cotangent); PyTorch's
    autograd evaluates ``sin`` forward and ``cos`` backward. Both are part of every benchmark
    step, the same for ours and native, and not part of any convolution.
    """
    cosine = jax.jit(jnp.cos)
    steps: dict[str, Step] = {"xla": lambda: jax.block_until_ready(cosine(out))}
    torch = (_torch_step("loss", values=np.asarray(out.astype(jnp.float32)),
                         dtype=str(out.dtype)) if with_torch else None)
    if torch is not None:
        steps["torch"] = torch
    return steps


def interleaved_medians(steps: dict[str, Step], repeats: int) -> dict[str, float]:
    """Median seconds per step; each repeat runs every step once, in a rotating order."""
    names = list(steps)
    for step in steps.values():
        step()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            samples[name].append(call_seconds(steps[name]))
    return {name: statistics.median(values) for name, values in samples.items()}


# The reference programs of ``machine_speed``: a square matrix product and an elementwise pass
# small enough to stay below glibc's 32 MB mmap threshold (item 8 of benchmarks/README.md).
SPEED_MATMUL_SIZE = 2048
SPEED_ELEMENTS = 2**22
# PyTorch's bfloat16 product is timed on smaller squares: on a CPU without bfloat16 instructions
# it ran at 0.15-0.2 GFLOP/s (AMD EPYC, Zen 1), 100 s per 2048² product and over 13 minutes for
# the probe's eight calls, where 512² takes about a quarter of a second.
SPEED_TORCH_BFLOAT16_SIZE = 512


def machine_speed(with_torch: bool, repeats: int = 7) -> dict[str, float]:
    """How fast this process runs a few reference programs, so that reports can be compared.

    The same processor name has run at different speeds from one session's machine to the next
    (the suite's XLA steps 1.7x apart at the median, up to 2.5x, PyTorch's 1.3x), which a
    report's device line cannot tell. So each run records XLA's float32 and bfloat16 matrix
    products (GFLOP/s; bfloat16 in, float32 accumulation, as the suite's products), an
    elementwise pass (GB/s read and written) and, with PyTorch, its float32 and bfloat16 matrix
    products (bfloat16 on ``SPEED_TORCH_BFLOAT16_SIZE`` squares): medians of ``repeats``
    interleaved calls.
    """
    size = SPEED_MATMUL_SIZE
    matmul = jax.jit(lambda a, b: lax.dot(a, b, preferred_element_type=jnp.float32))
    add_one = jax.jit(lambda x: x + 1)
    elements = jnp.ones(SPEED_ELEMENTS, jnp.float32)
    steps: dict[str, Step] = {}
    work: dict[str, float] = {}  # per step: GFLOP, or GB read and written
    for dtype in ("float32", "bfloat16"):
        square = jnp.ones((size, size), dtype)
        steps[f"xla_matmul_{dtype}_gflops"] = (
            lambda square=square: jax.block_until_ready(matmul(square, square)))
        work[f"xla_matmul_{dtype}_gflops"] = 2 * size**3 / 1e9
    steps["xla_elementwise_gbps"] = lambda: jax.block_until_ready(add_one(elements))
    work["xla_elementwise_gbps"] = 2 * SPEED_ELEMENTS * 4 / 1e9
    for dtype in ("float32", "bfloat16") if with_torch else ():
        n = SPEED_TORCH_BFLOAT16_SIZE if dtype == "bfloat16" else size
        torch = _torch_step("matmul", size=n, dtype=dtype)
        if torch is not None:
            steps[f"torch_matmul_{dtype}_gflops"] = torch
            work[f"torch_matmul_{dtype}_gflops"] = 2 * n**3 / 1e9
    return {name: work[name] / seconds
            for name, seconds in interleaved_medians(steps, repeats).items()}


def format_speed(speed: dict[str, float]) -> str:
    """``XLA matmul float32 139 GFLOP/s, ...``: one line for a report's header."""
    parts = []
    for name, value in speed.items():
        framework, what, *dtype, unit = name.split("_")
        label = {"gflops": "GFLOP/s", "gbps": "GB/s"}[unit]
        words = ["XLA" if framework == "xla" else "PyTorch", what, *dtype, f"{value:.0f}", label]
        parts.append(" ".join(words))
    return ", ".join(parts)


def _peak_bytes(device: jax.Device) -> int | None:
    stats = device.memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def bench_shape(shape: Shape, dtype: str, repeats: int, with_torch: bool) -> dict[str, Any]:
    """Times, ratios, compile times and memory of one shape in one dtype."""
    args = make_inputs(shape, dtype)
    ours, ours_compile, ours_temp, ours_program = _compiled(impl.conv_general_dilated, shape, args)
    native, native_compile, native_temp, native_program = _compiled(lax.conv_general_dilated,
                                                                    shape, args)
    steps = {"ours": ours, "native": native}
    device = jax.devices()[0]
    # PyTorch runs on the CPU: a ratio against it only means something for a CPU run.
    torch = torch_step(shape, dtype) if with_torch and device.platform == "cpu" else None
    if torch is not None:
        steps["torch"] = torch
    medians = interleaved_medians(steps, repeats)
    out = lax.conv_general_dilated(*args, **shape.lax_kwargs())
    loss = interleaved_medians(loss_steps(out, torch is not None), repeats)
    # ours/torch with the two frameworks' different cost of the loss itself taken out of ours.
    excluded = (None if torch is None else
                (medians["ours"] - loss["xla"] + loss["torch"]) / medians["torch"])
    return {
        "name": shape.name, "kind": shape.kind, "dtype": dtype,
        "lhs_shape": list(shape.lhs_shape), "rhs_shape": list(shape.rhs_shape),
        "options": {key: getattr(shape, key) for key in ("stride", "pad", "dilation", "groups")},
        "seconds": medians,
        "ratio_vs_native": medians["ours"] / medians["native"],
        # Same optimised program as native (a formulation was not chosen): the true ratio is 1 and
        # any other measured value is noise.
        "same_program": ours_program == native_program,
        "ratio_vs_torch": medians["ours"] / medians["torch"] if torch is not None else None,
        "loss_seconds": loss,
        "ratio_vs_torch_loss_excluded": excluded,
        "compile_seconds": {"ours": ours_compile, "native": native_compile},
        "compile_ratio": ours_compile / native_compile,
        "temp_bytes": {"ours": ours_temp, "native": native_temp},
        "peak_bytes": _peak_bytes(device),
    }


def geometric_mean(values: Sequence[float]) -> float:
    """Geometric mean (the average of ratios)."""
    return float(np.exp(np.mean(np.log(values))))


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median, worst and geometric-mean ratios over every row, and per shape kind and dtype.

    ``per_kind[kind][dtype]``: a kind's verdict against PyTorch is taken per dtype, since one
    dtype can be far faster in one framework on a given CPU (PyTorch's bfloat16 kernels without
    bfloat16 instructions), and a mean over both dtypes would hide the other's ratio.
    """
    def stats(values: list[float]) -> dict[str, float] | None:
        if not values:
            return None
        return {"median": statistics.median(values), "worst": max(values),
                "best": min(values), "geomean": geometric_mean(values)}

    summary: dict[str, Any] = {
        "vs_native": stats([row["ratio_vs_native"] for row in rows]),
        "vs_native_reformulated": stats([row["ratio_vs_native"] for row in rows
                                         if not row["same_program"]]),
        "vs_torch": stats([row["ratio_vs_torch"] for row in rows
                           if row["ratio_vs_torch"] is not None]),
        "vs_torch_loss_excluded": stats([row["ratio_vs_torch_loss_excluded"] for row in rows
                                         if row["ratio_vs_torch_loss_excluded"] is not None]),
        "compile": stats([row["compile_ratio"] for row in rows]),
        "per_kind": {},
    }
    for kind in dict.fromkeys(row["kind"] for row in rows):
        summary["per_kind"][kind] = {}
        for dtype in dict.fromkeys(row["dtype"] for row in rows if row["kind"] == kind):
            of_kind = [row for row in rows if row["kind"] == kind and row["dtype"] == dtype]
            summary["per_kind"][kind][dtype] = {
                "vs_native": stats([row["ratio_vs_native"] for row in of_kind]),
                "vs_torch": stats([row["ratio_vs_torch"] for row in of_kind
                                   if row["ratio_vs_torch"] is not None]),
                "vs_torch_loss_excluded": stats(
                    [row["ratio_vs_torch_loss_excluded"] for row in of_kind
                     if row["ratio_vs_torch_loss_excluded"] is not None]),
            }
    return summary


def select_shapes(shapes: Sequence[Shape], only: str | None) -> list[Shape]:
    """The shapes whose name contains one of the comma-separated substrings of ``only`` (every
    shape when ``only`` is empty or None); an empty substring among others is a ``ValueError``
    (it would match every shape: ``"resnet,"``)."""
    if not only:
        return list(shapes)
    wanted = only.split(",")
    if not all(part.strip() for part in wanted):
        raise ValueError(f"--only (={only!r}) has an empty name between its commas")
    return [shape for shape in shapes if any(part in shape.name for part in wanted)]


def environment() -> dict[str, Any]:
    """Device, processor and versions, for the report."""
    device = jax.devices()[0]
    versions = {"python": platform.python_version(), "jax": jax.__version__,
                "jaxlib": importlib.metadata.version("jaxlib"), "numpy": np.__version__}
    python = os.environ.get(TORCH_PYTHON_VARIABLE)
    worker = _WORKERS.get(python) if python else None  # not started for this alone (--no-torch)
    if worker is not None:  # PyTorch in another Python: its versions
        versions["torch"] = worker.versions["torch"]
        versions["python (torch)"] = worker.versions["python"]
    elif importlib.util.find_spec("torch") is not None:
        versions["torch"] = importlib.metadata.version("torch")
    processor = platform.processor() or platform.machine()
    model, features = _host.host_cpu()
    return {"platform": device.platform, "device": device.device_kind,
            "processor": processor, "cpu_model": model or processor,
            "cpu_features": list(features),
            "bfloat16_in_float32": _host.bfloat16_in_float32(),
            "float32_rules_without_avx512": _formulations._avx2_float32(np.dtype(np.float32)),
            "bfloat16_rules_as_float32": _formulations._slow_bfloat16_products(),
            "cpu_count": _cpu_count(), "versions": versions,
            "omp_wait_policy": (os.environ.get("OMP_WAIT_POLICY") if worker is None
                                else worker.versions["omp_wait_policy"])}


def describe_machine(env: dict[str, Any]) -> str:
    """``cpu (Intel Xeon; avx512f, amx_bf16; 2 cores)``: the first words of a report's header."""
    parts = [env.get("cpu_model") or env.get("processor") or env["platform"]]
    if env.get("cpu_features"):
        parts.append(", ".join(env["cpu_features"]))
    if env.get("bfloat16_in_float32"):
        parts.append("bfloat16 convolutions in float32")
    if env.get("float32_rules_without_avx512"):
        parts.append("float32 formulations for CPUs without AVX-512")
    if env.get("bfloat16_rules_as_float32"):
        parts.append("bfloat16 formulations as float32's at unit strides")
    return f"{env['device']} ({'; '.join(parts)}; {env['cpu_count']} cores)"


def device_line(environment: dict[str, Any], python: bool = True) -> str:
    """A report's first line: the machine (``describe_machine``) and the versions that ran."""
    versions = environment["versions"]
    interpreter = f"Python {versions['python']}, " if python else ""
    return (f"Device: {describe_machine(environment)}; {interpreter}jax {versions['jax']}, "
            f"jaxlib {versions['jaxlib']}.")


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def run_suite(shapes: Sequence[Shape], dtypes: Sequence[str], repeats: int, with_torch: bool,
              progress: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Benchmark every shape in every dtype; returns the environment, rows and summary."""
    speed = machine_speed(with_torch)
    progress(f"machine speed: {format_speed(speed)}")
    rows = []
    for dtype in dtypes:
        for shape in shapes:
            row = bench_shape(shape, dtype, repeats, with_torch)
            progress(format_row(row))
            rows.append(row)
    return {"environment": environment(), "machine_speed": speed, "repeats": repeats,
            "rows": rows, "summary": summarize(rows)}


def json_from_fresh_process(argv: Sequence[str], what: str) -> Any:
    """The JSON on the last stdout line of ``python argv`` run in a fresh process (its stderr
    passes through): how the benchmarks repeat a measurement in several processes."""
    done = subprocess.run([sys.executable, *argv], stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit code {done.returncode})")
    return json.loads(done.stdout.splitlines()[-1])


SUITE_DTYPES = ("float32", "bfloat16")


def _dtype_list(text: str) -> list[str]:
    """``--dtypes``' value: comma-separated, each of ``SUITE_DTYPES``."""
    dtypes = text.split(",")
    unknown = [dtype for dtype in dtypes if dtype not in SUITE_DTYPES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)} (of "
                                         f"{', '.join(SUITE_DTYPES)})")
    return dtypes


def dtypes_option(parser: argparse.ArgumentParser) -> None:
    """The ``--dtypes`` option of the scripts under ``benchmarks/``: a checked list of
    ``SUITE_DTYPES`` (default both); ``",".join(args.dtypes)`` forwards it to a fresh process."""
    parser.add_argument("--dtypes", type=_dtype_list, default=list(SUITE_DTYPES),
                        help=f"comma-separated, of {', '.join(SUITE_DTYPES)} (default both)")


def ab_arguments(description: str, repeats: int, runs: int, out: Path) -> argparse.ArgumentParser:
    """The options of every A/B script under ``benchmarks/`` (``--repeats``, ``--runs``,
    ``--only``, ``--out``, and the hidden ``--one-run`` of ``run_ab``'s fresh processes)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--only", default="",
                        help="comma-separated substrings: keep shapes whose name contains one")
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)
    return parser


def parse_ab_arguments(parser: argparse.ArgumentParser, shapes: Sequence[Shape]
                       ) -> argparse.Namespace:
    """``parser``'s arguments, with ``--only`` checked against the script's ``shapes``."""
    args = parser.parse_args()
    if not select_shapes(shapes, args.only):
        parser.error(f"--only {args.only!r}: no shape's name contains it")
    return args


def run_ab(args: argparse.Namespace, script: str, one_run: Callable[[], Any],
           table: Callable[[list[Any]], str], forward: Sequence[str] = ()) -> int:
    """The rest of an A/B script's ``main`` once ``ab_arguments`` are parsed.

    In a fresh process (``--one-run``) prints ``one_run()`` as JSON. Otherwise runs ``script
    --one-run`` with the same ``--repeats``, ``--only`` and ``forward`` in ``args.runs`` fresh
    processes, one after another (progress on stderr), prints ``table(runs)`` and writes it to
    ``args.out``, and the runs to the JSON beside it, each file written whole.
    """
    if args.one_run:
        print(json.dumps(one_run()))
        return 0
    runs = []
    for run in range(args.runs):
        print(f"run {run + 1} of {args.runs}", file=sys.stderr, flush=True)
        runs.append(json_from_fresh_process(
            [script, "--one-run", "--repeats", str(args.repeats), "--only", args.only, *forward],
            f"run {run + 1}"))
    text = table(runs)
    write_atomic(args.out, text)
    write_atomic(args.out.with_suffix(".json"), json.dumps(runs, indent=2) + "\n")
    print(text)
    return 0


def ab_times(lowered: dict[str, jax.stages.Lowered], args: Sequence[Any], repeats: int
             ) -> dict[str, Any]:
    """One row of an A/B script: whether its two sides' programs are the same and, if not, each
    side's median seconds per step (``<side>_s``), compiled and timed interleaved on ``args``."""
    row: dict[str, Any] = {"same_program": len({side.as_text() for side in lowered.values()}) == 1}
    if not row["same_program"]:
        compiled = {name: side.compile() for name, side in lowered.items()}
        steps = {name: (lambda program=program: jax.block_until_ready(program(*args)))
                 for name, program in compiled.items()}
        row.update({f"{name}_s": seconds
                    for name, seconds in interleaved_medians(steps, repeats).items()})
    return row


def ab_cells(rows: Sequence[dict[str, Any]], before: str, after: str) -> tuple[str, float]:
    """The cells ``before ms | after ms | ratio per run | median ratio`` of an A/B table's row.

    ``rows`` holds one shape's result from each run, with the two sides' seconds under the keys
    ``before`` and ``after``; each run's ratio is after / before. Returns the cells and the
    median ratio.
    """
    ratios = [row[after] / row[before] for row in rows]
    median = statistics.median(ratios)
    cells = (f"{1e3 * statistics.median(row[before] for row in rows):.1f} | "
             f"{1e3 * statistics.median(row[after] for row in rows):.1f} | "
             f"{', '.join(f'{ratio:.2f}' for ratio in ratios)} | {median:.2f}")
    return cells, median


def ab_dtype_rows(runs: Sequence[Sequence[dict[str, Any]]], before: str, after: str) -> list[str]:
    """The rows ``| shape | dtype | ab_cells |`` of an A/B table over shapes and dtypes.

    Each run lists one row per shape and dtype, in the same order, with ``same_program`` and,
    where the two sides' programs differ, their seconds under ``before`` and ``after``. A row
    whose two programs are the same reads "same program", without times.
    """
    lines = []
    for index, head in enumerate(runs[0]):
        if head["same_program"]:
            lines.append(f"| {head['shape']} | {head['dtype']} | | | same program | |")
            continue
        cells, _ = ab_cells([run[index] for run in runs], before, after)
        lines.append(f"| {head['shape']} | {head['dtype']} | {cells} |")
    return lines


def _median_or_none(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def combine_runs(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Reports of the same suite from separate processes, as one: per row, the median over the
    runs of each time and of each ratio (every ratio is still measured side by side within its
    run), with each run's ratios kept under ``runs``.

    On a shared VM one process can sit in a slow or fast state for a program (identical programs
    moved by up to 1.3x between processes here), so one run's row can mislead where the median of
    several processes does not.
    """
    if len(reports) == 1:
        return reports[0]
    first = reports[0]
    rows = []
    for index, row in enumerate(first["rows"]):
        runs = [report["rows"][index] for report in reports]
        if any(run["name"] != row["name"] or run["dtype"] != row["dtype"] for run in runs):
            raise ValueError("the runs to combine measured different rows")
        combined = dict(row)
        for key in ("seconds", "loss_seconds", "compile_seconds"):
            combined[key] = {name: _median_or_none([run[key].get(name) for run in runs])
                             for name in row[key]}
        for key in ("ratio_vs_native", "ratio_vs_torch", "ratio_vs_torch_loss_excluded",
                    "compile_ratio"):
            combined[key] = _median_or_none([run[key] for run in runs])
        combined["same_program"] = all(run["same_program"] for run in runs)
        combined["runs"] = {key: [run[key] for run in runs]
                            for key in ("ratio_vs_native", "ratio_vs_torch",
                                        "ratio_vs_torch_loss_excluded")}
        rows.append(combined)
    summary = summarize(rows)
    # How far one process's verdict per kind can sit from the median's: each process's geometric
    # mean of ours/torch over the kind's rows.
    per_report = [summarize(report["rows"])["per_kind"] for report in reports]
    for kind, per_dtype in summary["per_kind"].items():
        for dtype, stats in per_dtype.items():
            per_process = [each[kind][dtype]["vs_torch"] for each in per_report]
            stats["vs_torch_per_process"] = (None if None in per_process else
                                             [each["geomean"] for each in per_process])
    speeds = [report["machine_speed"] for report in reports if "machine_speed" in report]
    speed = {name: statistics.median(each[name] for each in speeds)
             for name in (speeds[0] if speeds else {})}
    return {"environment": first["environment"], "machine_speed": speed,
            "machine_speed_runs": speeds, "repeats": first["repeats"],
            "processes": len(reports), "rows": rows, "summary": summary}


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.1f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def format_row(row: dict[str, Any]) -> str:
    """One line of progress."""
    return (f"{row['name']:<18} {row['dtype']:<8} ours {_ms(row['seconds']['ours'])} ms, "
            f"native {_ms(row['seconds']['native'])} ms (x{_ratio(row['ratio_vs_native'])}), "
            f"torch {_ms(row['seconds'].get('torch'))} ms (x{_ratio(row['ratio_vs_torch'])})")


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table with the environment and the summary."""
    env = report["environment"]
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())
    lines = [
        f"Device: {describe_machine(env)}; {versions}.",
        *([f"Machine speed (reference programs, see `machine_speed`): "
           f"{format_speed(report['machine_speed'])}."] if report.get("machine_speed") else []),
        f"jit(grad) of sum(sin(conv)) wrt (lhs, rhs); medians of {report['repeats']} interleaved "
        "repeats" + (f" in each of {report['processes']} processes, and of those per-process "
                     "times and ratios" if report.get("processes", 1) > 1 else "")
        + "; ratio = ours / other (below 1 is faster). loss ms: the loss's own elementwise "
        "work on the output alone (XLA: cos; PyTorch: sin + cos), part of every step.",
        "",
        "| shape | kind | dtype | lhs | rhs | ours ms | native ms | torch ms | ours/native | "
        "ours/torch | loss ms XLA/torch | compile ours/native | temp MB ours/native | peak MB | "
        "same program |",
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| --- |",
    ]
    for row in report["rows"]:
        temps = row["temp_bytes"]
        temp = ("n/a" if temps["ours"] is None
                else f"{temps['ours'] / 1e6:.0f}/{temps['native'] / 1e6:.0f}")
        peak = "n/a" if row["peak_bytes"] is None else f"{row['peak_bytes'] / 1e6:.0f}"
        loss = f"{_ms(row['loss_seconds']['xla'])}/{_ms(row['loss_seconds'].get('torch'))}"
        lines.append(
            f"| {row['name']} | {row['kind']} | {row['dtype']} | {tuple(row['lhs_shape'])} | "
            f"{tuple(row['rhs_shape'])} | {_ms(row['seconds']['ours'])} | "
            f"{_ms(row['seconds']['native'])} | {_ms(row['seconds'].get('torch'))} | "
            f"{_ratio(row['ratio_vs_native'])} | {_ratio(row['ratio_vs_torch'])} | {loss} | "
            f"{_ratio(row['compile_ratio'])} | {temp} | {peak} | "
            f"{'yes' if row['same_program'] else 'no'} |")
    summary = report["summary"]
    lines += ["", "| ratio | median | worst | best | geometric mean |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for label, key in (("ours/native", "vs_native"),
                       ("ours/native where the program differs", "vs_native_reformulated"),
                       ("ours/torch", "vs_torch"),
                       ("ours/torch, the loss's cost difference taken out", "vs_torch_loss_excluded"),
                       ("compile ours/native", "compile")):
        stats = summary[key]
        if stats is not None:
            lines.append(f"| {label} | {stats['median']:.2f} | {stats['worst']:.2f} | "
                         f"{stats['best']:.2f} | {stats['geomean']:.2f} |")
    lines += ["", f"Per kind and dtype, geometric means. Target: ours/torch at most "
              f"{TORCH_TARGET}; the per-process column gives the range of each process's own "
              "geometric mean.", "",
              "| kind | dtype | ours/native | ours/torch | ours/torch per process | ours/torch, "
              f"loss taken out | ours/torch ≤ {TORCH_TARGET} |",
              "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    dtypes = dict.fromkeys(row["dtype"] for row in report["rows"])
    for dtype, (kind, per_dtype) in itertools.product(dtypes, summary["per_kind"].items()):
        if dtype not in per_dtype:
            continue
        stats = per_dtype[dtype]
        torch, excluded = stats["vs_torch"], stats["vs_torch_loss_excluded"]
        per_process = stats.get("vs_torch_per_process")
        spread = ("n/a" if not per_process else
                  f"{min(per_process):.2f}-{max(per_process):.2f}")
        verdict = "n/a" if torch is None else ("yes" if torch["geomean"] <= TORCH_TARGET else "no")
        lines.append(f"| {kind} | {dtype} | {stats['vs_native']['geomean']:.2f} | "
                     f"{'n/a' if torch is None else format(torch['geomean'], '.2f')} | {spread} | "
                     f"{'n/a' if excluded is None else format(excluded['geomean'], '.2f')} | "
                     f"{verdict} |")
    return "\n".join(lines) + "\n"


def plot_ratios(report: dict[str, Any]) -> bytes:
    """A PNG bar chart of ours/native and ours/torch per shape and dtype (log scale)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    labels = [f"{row['name']} ({row['dtype']})" for row in rows]
    positions = np.arange(len(rows))
    figure, axes = plt.subplots(figsize=(max(6.0, 0.45 * len(rows) + 2), 4.5))
    axes.bar(positions - 0.2, [row["ratio_vs_native"] for row in rows], 0.4, label="ours / native lax")
    torch_ratios = [row["ratio_vs_torch"] or np.nan for row in rows]
    if not all(np.isnan(torch_ratios)):
        axes.bar(positions + 0.2, torch_ratios, 0.4, label="ours / PyTorch CPU")
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_yscale("log")
    axes.set_ylabel("time ratio (below 1: ours faster)")
    axes.set_xticks(positions, labels, rotation=60, ha="right", fontsize=7)
    axes.set_title(f"jit(grad) of conv on {report['environment']['device']}")
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


@jax.jit
def _jitted_backward(x: jax.Array, f: jax.Array, upstream: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jax.vjp(impl.conv2d, x, f)[1](upstream)


def reference_scaling(sizes: Sequence[int], kernel: int = 3, repeats: int = 3) -> list[dict[str, Any]]:
    """The tutorial's NumPy loops (``impl.reference``) vs the jitted op, for n x n inputs."""
    rows = []
    for size in sizes:
        rng = np.random.default_rng(size)
        x, f = rng.standard_normal((size, size)), rng.standard_normal((kernel, kernel))
        upstream = rng.standard_normal((size - kernel + 1,) * 2)
        steps = {"loops": lambda x=x, f=f, g=upstream: impl.reference.conv_backward(g, x, f),
                 "jitted": lambda x=x, f=f, g=upstream: jax.block_until_ready(
                     _jitted_backward(x, f, g))}
        medians = interleaved_medians(steps, repeats)
        rows.append({"size": size, "kernel": kernel, "seconds": medians,
                     "speedup": medians["loops"] / medians["jitted"]})
    return rows


def plot_reference(rows: Sequence[dict[str, Any]]) -> bytes:
    """A log-log PNG of backward time against input size: NumPy loops vs the jitted op."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [row["size"] for row in rows]
    figure, axes = plt.subplots(figsize=(5.5, 4))
    for key, label in (("loops", "NumPy loops (impl.reference)"), ("jitted", "jitted op (jax.vjp)")):
        axes.loglog(sizes, [row["seconds"][key] for row in rows], "o-", label=label)
    axes.set_xlabel("input size n (n x n input, 3x3 filter)")
    axes.set_ylabel("backward time (s)")
    axes.set_title("Tutorial loops vs jitted rotated-filter rule")
    axes.legend()
    axes.grid(True, which="both", linewidth=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()
