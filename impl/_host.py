r"""The host's CPU, as far as the CPU formulation rules and the benchmark reports depend on it.

XLA:CPU's bfloat16 matrix kernels use AMX where the processor has it, and one selection rule
(``impl._formulations._channels_last_pays``) measured the other way round on such a machine
(item 14 of ``benchmarks/README.md``). The choice is made when the op is traced, so a program
exported on one machine and run on another carries the tracing machine's choice; every choice is
exact, only its speed differs.
"""

import functools
from pathlib import Path

# Instruction sets that changed which formulation was fastest, or that XLA's and oneDNN's
# bfloat16 kernels use: reported with every benchmark.
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_description(cpuinfo: str) -> tuple[str | None, tuple[str, ...]]:
    r"""(model name, which of ``CPU_FEATURES`` it has) from the text of Linux's /proc/cpuinfo.

    >>> cpu_description("model name\t: Example CPU\nflags\t\t: fpu avx2 avx512f amx_bf16\n")
    ('Example CPU', ('avx2', 'avx512f', 'amx_bf16'))
    """
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return fields.get("model name") or None, tuple(name for name in CPU_FEATURES if name in flags)


@functools.cache
def host_cpu() -> tuple[str | None, tuple[str, ...]]:
    """``cpu_description`` of this machine; ``(None, ())`` where /proc/cpuinfo cannot be read."""
    try:
        return cpu_description(Path("/proc/cpuinfo").read_text())
    except OSError:
        return None, ()


def has_amx() -> bool:
    """Whether this machine's CPU has AMX with bfloat16 (Intel Sapphire Rapids and later)."""
    return "amx_bf16" in host_cpu()[1]
