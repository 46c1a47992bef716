"""The fresh-process runner that times reference implementations (suite.bench --compare)."""

import platform

import pytest

from suite import reference_timing


@pytest.mark.skipif(platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc',
                    reason='suite.host_memory tunes glibc malloc only')
def test_the_child_runs_with_the_allocator_setting_asked_for():
  # dict(...) stands in for a timing function: it runs in the child, which adds its setting
  kept = reference_timing.run_in_fresh_process(dict, keep_host_memory=True, steps=3)
  assert set(kept) == {'steps', 'host_memory'} and kept['steps'] == 3
  assert kept['host_memory'].startswith('glibc malloc: one arena')
  default = reference_timing.run_in_fresh_process(dict, keep_host_memory=False)
  assert default == {'host_memory': 'system default'}


@pytest.mark.parametrize('steps, warmup, repeats', [(0, 1, 1), (1, -1, 1), (1, 1, 0)])
def test_timing_counts_are_checked(steps, warmup, repeats):
  with pytest.raises(ValueError, match='need steps >= 1, warmup >= 0 and repeats >= 1'):
    reference_timing.time_hf_train_steps(lambda: None, {}, steps, warmup, repeats=repeats)
