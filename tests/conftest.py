"""Shared test setup."""

from __future__ import annotations

import os

# Ray in tests stays on loopback: its single-node mode keeps every address at 127.0.0.1 (see
# nas.engine.runners.ray_runner).
# Set before anything imports Ray; subprocesses inherit it.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
