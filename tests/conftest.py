"""Test-wide settings: no persistent XLA cache (tests stay hermetic; CI starts cold anyway)."""

import os

os.environ.setdefault("LIFTNN_COMPILE_CACHE", "off")
