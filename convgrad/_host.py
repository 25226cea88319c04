r"""The host's CPU, as the benchmark reports describe it (processor name and instruction sets).

A CPU formulation rule once depended on it (AMX, item 14 of ``benchmarks/README.md``). The op's
choices now depend only on the case and on jaxlib's version, so a program traced on one machine
chooses as on any other, and this lives beside the reports, not in ``impl``.
"""

import functools
from pathlib import Path

# Instruction sets that XLA's and oneDNN's bfloat16 kernels use, and that once changed which
# formulation was fastest: reported with every benchmark.
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

