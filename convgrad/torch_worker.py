"""PyTorch's side of the benchmark steps, in this process or in another Python.

``convgrad bench`` compares the op with PyTorch's CPU autograd of the same loss. PyTorch usually
runs in the benchmark's own process (``convgrad.bench``). Where the benchmark's Python has no
PyTorch build to install (this project's machines carry a CPU wheel for one Python only),
``CONVGRAD_TORCH_PYTHON`` names another interpreter that has it, and ``convgrad.bench`` starts
this file there as a script: it reads one JSON request per line on stdin and answers each with
one JSON line on stdout.

    {"op": "versions"}                                -> {"python": "3.11.9", "torch": ..., ...}
    {"op": "step", "shape": {...}, "dtype": "float32"} -> {"id": 0}    (``conv_step``)
    {"op": "loss", "path": "out.npy", "dtype": ...}   -> {"id": 1}    (``loss_step`` of its values)
    {"op": "matmul", "size": 2048, "dtype": ...}      -> {"id": 2}    (``matmul_step``)
    {"op": "run", "id": 0}                            -> {"seconds": 0.0123}
    {"op": "drop", "ids": [0, 1]}                     -> never an answer: those steps are freed
                                                         (an id that is not live is skipped)
    any request that fails                            -> {"error": "ValueError: ..."}

``run`` calls the step once and times it here, so the pipe's round trip is not part of PyTorch's
time. While this process runs a step the benchmark's process waits on the pipe, and while that
one runs XLA this one waits on stdin: the frameworks still take turns on the same cores, as in
one process. This file imports nothing from the project (only the standard library, NumPy and
PyTorch), so the other interpreter needs only those.
"""

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def load_torch() -> Any:
    """``torch``, with its OpenMP threads set to sleep while idle.

    They spin by default; beside XLA's thread pool on a few shared cores that slowed PyTorch up to
    3x in our interleaved runs, so they sleep (this favours PyTorch). It only takes effect if torch
    was not imported yet.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    return torch


def conv_function(torch: Any, spatial: int) -> Callable[..., Any]:
    """PyTorch's functional convolution with ``spatial`` axes (``conv1d``, ``conv2d``,
    ``conv3d``)."""
    return {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d,
            3: torch.nn.functional.conv3d}[spatial]


def conv_step(torch: Any, shape: dict[str, Any], dtype: str) -> Callable[[], Any]:
    """PyTorch CPU autograd of ``sum(sin(conv(lhs, rhs)))`` with respect to (lhs, rhs), on seeded
    normal inputs; ``shape`` holds ``convgrad.bench.Shape``'s fields."""
    conv = conv_function(torch, len(shape["lhs_shape"]) - 2)
    torch_dtype = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(0)
    lhs = torch.randn(tuple(shape["lhs_shape"]), generator=generator).to(torch_dtype)
    rhs = torch.randn(tuple(shape["rhs_shape"]), generator=generator).to(torch_dtype)
    lhs.requires_grad_()
    rhs.requires_grad_()

    def step() -> Any:
        out = conv(lhs, rhs, stride=shape["stride"], padding=shape["pad"],
                   dilation=shape["dilation"], groups=shape["groups"])
        return torch.autograd.grad(torch.sin(out).float().sum(), (lhs, rhs))

    return step


def as_tensor(torch: Any, values: Any, dtype: str) -> Any:
    """``values`` (an array, bfloat16 included) as a PyTorch CPU tensor of ``dtype``, through a
    float32 copy (exact for bfloat16)."""
    return torch.from_numpy(np.array(values, np.float32)).to(getattr(torch, dtype))


def loss_step(torch: Any, values: np.ndarray, dtype: str) -> Callable[[], Any]:
    """The loss's elementwise work in PyTorch's autograd: ``sin`` forward and ``cos`` backward of
    ``values`` (a convolution's output, float32) in ``dtype``."""
    tensor = as_tensor(torch, values, dtype)
    return lambda: (torch.sin(tensor), torch.cos(tensor))


def matmul_step(torch: Any, size: int, dtype: str) -> Callable[[], Any]:
    """A square matrix product of ``size`` in ``dtype`` (``convgrad.bench.machine_speed``)."""
    square = torch.ones((size, size), dtype=getattr(torch, dtype))
    return lambda: square @ square


# The steps by request op, each built from the request's other fields.
STEPS: dict[str, Callable[..., Callable[[], Any]]] = {
    "step": conv_step, "loss": loss_step, "matmul": matmul_step}


def _answer(request: dict[str, Any], torch: Any, steps: list[Callable[[], Any] | None]
            ) -> dict[str, Any] | None:
    op = request.get("op")
    if op == "versions":
        return {"python": platform.python_version(), "torch": torch.__version__,
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                "live_steps": sum(step is not None for step in steps)}
    if op == "drop":  # never answered, so it never fails: an id that is not live is skipped
        ids = request.get("ids")
        for index in ids if isinstance(ids, list) else ():
            if isinstance(index, int) and 0 <= index < len(steps):
                steps[index] = None
        return None
    if op == "run":
        step = steps[request["id"]]
        if step is None:
            raise ValueError(f"step {request['id']} was dropped")
        start = time.perf_counter()
        step()
        return {"seconds": time.perf_counter() - start}
    if op not in STEPS:
        raise ValueError(f"unknown request op (={op!r})")
    fields = {key: value for key, value in request.items() if key != "op"}
    if "path" in fields:  # an array sent as a .npy file
        fields["values"] = np.load(fields.pop("path"))
    steps.append(STEPS[op](torch, **fields))
    return {"id": len(steps) - 1}


def serve(lines: Any, write: Callable[[str], Any]) -> None:
    """Answer each JSON request of ``lines`` (but ``drop``) with one JSON line through
    ``write``."""
    torch = load_torch()
    steps: list[Callable[[], Any] | None] = []
    for line in lines:
        try:
            answer = _answer(json.loads(line), torch, steps)
        except Exception as error:  # any failure is reported to the benchmark's process
            answer = {"error": f"{type(error).__name__}: {error}"}
        if answer is not None:
            write(json.dumps(answer) + "\n")


def main() -> None:
    try:
        load_torch()
    except ImportError as error:
        sys.stdout.write(json.dumps({"error": f"no PyTorch in {sys.executable}: {error}"}) + "\n")
        sys.stdout.flush()
        return

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    serve(sys.stdin, write)


if __name__ == "__main__":
    main()
