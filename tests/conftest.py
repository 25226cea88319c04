"""Shared test setup: float64 enabled, so tight checks run in double precision; and bfloat16
convolutions in the formulations measured for CPUs with bfloat16 dot products on every host, so
that the tests of those formulations' programs do not depend on the CPU that runs them (the
float32 path for other CPUs has its own tests, ``test_host.py``). Fresh processes started by the
tests inherit the setting."""

import os

import jax

from impl import _host

os.environ[_host.BFLOAT16_OVERRIDE] = "native"
jax.config.update("jax_enable_x64", True)
