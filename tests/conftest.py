"""Shared fixtures for vlmerge's pytest suite (what does not fit a notebook)."""
import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope='session')
def root(): return ROOT


def run_cli(*args, cwd=None, timeout=600, env=None):
    "Run the `vlmerge` console script; return the CompletedProcess (text mode)."
    return subprocess.run([str(BIN/'vlmerge'), *map(str, args)], cwd=cwd or ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
