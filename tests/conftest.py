"""Test-session settings shared by every test package."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jax  # noqa: E402

# Many tests build fresh Trainers and models whose jitted programs are identical; XLA's
# persistent cache (a directory private to this test process) lets them reuse compilations.
if not jax.config.jax_compilation_cache_dir:
  _cache = tempfile.mkdtemp(prefix='shapebench-jax-')
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  jax.config.update('jax_compilation_cache_dir', _cache)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
