"""Shared test setup: float64 enabled, so tight checks run in double precision; and the CPU
formulations measured for CPUs with AVX-512, bfloat16 dot products and AMX on every host, so that
the tests of those formulations' programs do not depend on the CPU that runs them (the choices
for other CPUs have their own tests, ``test_host.py``). Fresh processes started by the tests
inherit the settings."""

import os

import jax

from impl import _host

os.environ[_host.BFLOAT16_OVERRIDE] = "native"
os.environ[_host.AVX512_OVERRIDE] = "yes"
os.environ[_host.AMX_OVERRIDE] = "yes"
jax.config.update("jax_enable_x64", True)
