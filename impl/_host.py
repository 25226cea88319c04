r"""The host's CPU: its name and instruction sets, and the formulation rules that ask for them.

Three checks of the host steer CPU formulation rules (items 15, 16, 37 and 38 of
``benchmarks/README.md``):

* on an x86 CPU without bfloat16 dot-product instructions (AVX-512 BF16 or AMX-BF16) XLA's
  bfloat16 matrix kernel ran slower than its float32 one, and every bfloat16 convolution of the
  benchmark suite was faster computed in float32 (``bfloat16_in_float32``);
* on an x86 CPU without AVX-512 at all, XLA's (jaxlib 0.10) float32 products also paid on small
  planes and inside folded 3-D convolutions, where they lost on the AVX-512 machines that the
  other rules were fitted on (``without_avx512``);
* on an x86 CPU with AVX-512 BF16 but without AMX (an AMD EPYC of the Zen 4 generation),
  jaxlib 0.12.1's bfloat16 products ran 2.2x as fast as its float32 ones, where on the Intel
  Xeon with AMX that the rule for 0.12.1 was fitted on they ran no faster; so bfloat16 keeps its
  own formulations there, and float32's filter-gradient products, which lost there with 64
  features, need 128; with jaxlib 0.10 float32 products paid there on the small planes of the
  large batch, as on CPUs without AVX-512 (``without_amx``).

The choices are made when the op is traced, so a program exported on one machine carries that
machine's choice; ``CONVGRAD_CPU_BFLOAT16`` (``native`` or ``float32``), ``CONVGRAD_CPU_AVX512``
and ``CONVGRAD_CPU_AMX`` (``yes`` or ``no``) pin them for such exports and for tests. Every
choice is exact up to the order of additions. The benchmark reports also name the processor and
these instruction sets.
"""

import functools
import os
from collections.abc import Callable
from pathlib import Path

# Instruction sets that XLA's and oneDNN's bfloat16 kernels use, and that once changed which
# formulation was fastest: reported with every benchmark.
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
# Those that make a bfloat16 dot product native rather than converted.
BFLOAT16_DOT_FEATURES = ("avx512_bf16", "amx_bf16")
# The environment variable that overrides the host check, and its values.
BFLOAT16_OVERRIDE = "CONVGRAD_CPU_BFLOAT16"
BFLOAT16_MODES = ("native", "float32")
# The environment variable that overrides the AVX-512 check, and its values.
AVX512_OVERRIDE = "CONVGRAD_CPU_AVX512"
AVX512_MODES = ("yes", "no")
# The environment variable that overrides the AMX check, and its values.
AMX_OVERRIDE = "CONVGRAD_CPU_AMX"
AMX_MODES = ("yes", "no")


def _fields(cpuinfo: str) -> dict[str, str]:
    """The first processor's ``key: value`` fields of Linux's /proc/cpuinfo text."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_description(cpuinfo: str) -> tuple[str | None, tuple[str, ...]]:
    r"""(model name, which of ``CPU_FEATURES`` it has) from the text of Linux's /proc/cpuinfo.

    >>> cpu_description("model name\t: Example CPU\nflags\t\t: fpu avx2 avx512f amx_bf16\n")
    ('Example CPU', ('avx2', 'avx512f', 'amx_bf16'))
    """
    fields = _fields(cpuinfo)
    flags = set(fields.get("flags", "").split())
    return fields.get("model name") or None, tuple(name for name in CPU_FEATURES if name in flags)


def lacks_bfloat16_dot(cpuinfo: str) -> bool:
    r"""Whether /proc/cpuinfo's text names an x86 CPU without bfloat16 dot-product instructions.

    Only x86 CPUs list ``flags``; elsewhere (ARM lists ``Features``) or where the text is missing
    the answer is False, which keeps the bfloat16 formulations as measured on x86 with them.

    >>> lacks_bfloat16_dot("flags\t\t: fpu avx2 fma\n"), lacks_bfloat16_dot("flags\t: avx2 amx_bf16\n")
    (True, False)
    >>> lacks_bfloat16_dot("Features\t: fp asimd bf16\n"), lacks_bfloat16_dot("")
    (False, False)
    """
    flags = _fields(cpuinfo).get("flags")
    return flags is not None and not set(flags.split()) & set(BFLOAT16_DOT_FEATURES)


def lacks_avx512(cpuinfo: str) -> bool:
    r"""Whether /proc/cpuinfo's text names an x86 CPU without AVX-512 (no ``avx512f`` flag).

    As for ``lacks_bfloat16_dot``, non-x86 text and missing text answer False.

    >>> lacks_avx512("flags\t\t: fpu avx2 fma\n"), lacks_avx512("flags\t: avx2 avx512f\n")
    (True, False)
    >>> lacks_avx512("Features\t: fp asimd\n"), lacks_avx512("")
    (False, False)
    """
    return _lacks_flag(cpuinfo, "avx512f")


def lacks_amx(cpuinfo: str) -> bool:
    r"""Whether /proc/cpuinfo's text names an x86 CPU without AMX (no ``amx_bf16`` flag).

    As for ``lacks_bfloat16_dot``, non-x86 text and missing text answer False.

    >>> lacks_amx("flags\t\t: avx512f avx512_bf16\n"), lacks_amx("flags\t: avx512_bf16 amx_bf16\n")
    (True, False)
    >>> lacks_amx("Features\t: fp asimd bf16\n"), lacks_amx("")
    (False, False)
    """
    return _lacks_flag(cpuinfo, "amx_bf16")


def _lacks_flag(cpuinfo: str, flag: str) -> bool:
    """Whether /proc/cpuinfo's text lists x86 ``flags`` and ``flag`` is not among them."""
    flags = _fields(cpuinfo).get("flags")
    return flags is not None and flag not in flags.split()


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def host_cpu() -> tuple[str | None, tuple[str, ...]]:
    """``cpu_description`` of this machine; ``(None, ())`` where /proc/cpuinfo cannot be read."""
    return cpu_description(_cpuinfo())


def bfloat16_in_float32() -> bool:
    """Whether the op computes bfloat16 convolutions on CPU in float32: ``CONVGRAD_CPU_BFLOAT16``
    if set (``float32`` or ``native``), else whether this host ``lacks_bfloat16_dot``."""
    return _choice(BFLOAT16_OVERRIDE, BFLOAT16_MODES, lacks_bfloat16_dot)


def without_avx512() -> bool:
    """Whether the op chooses CPU formulations as measured on an x86 CPU without AVX-512:
    ``CONVGRAD_CPU_AVX512`` if set (``no``: as without, ``yes``: as with), else whether this host
    ``lacks_avx512``."""
    return _choice(AVX512_OVERRIDE, AVX512_MODES, lacks_avx512)


def without_amx() -> bool:
    """Whether the op chooses CPU formulations as measured on an x86 CPU without AMX (bfloat16's
    at unit strides and float32 filter gradients' with jaxlib 0.12.1, float32 small planes' with
    jaxlib 0.10): ``CONVGRAD_CPU_AMX`` if set (``no``: as without, ``yes``: as with), else
    whether this host ``lacks_amx``."""
    return _choice(AMX_OVERRIDE, AMX_MODES, lacks_amx)


def _choice(variable: str, modes: tuple[str, str], lacks: Callable[[str], bool]) -> bool:
    """The environment's setting of ``variable`` if set (the second of ``modes`` answers True),
    else ``lacks`` of this host's /proc/cpuinfo."""
    mode = os.environ.get(variable, "").strip().lower()
    if mode and mode not in modes:
        raise ValueError(f"{variable}={mode!r}: expected one of {modes} or unset")
    if mode:
        return mode == modes[1]
    return lacks(_cpuinfo())
