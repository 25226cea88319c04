"""Shared test setup: float64 enabled, so tight checks run in double precision."""

import jax

jax.config.update("jax_enable_x64", True)
