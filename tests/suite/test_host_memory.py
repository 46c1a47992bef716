"""suite.host_memory: freed blocks stay in the process, so reusing them does not page-fault."""

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc',
    reason='suite.host_memory tunes glibc malloc only')

# Allocates, touches and frees a 64 MiB block three times; reports page faults per round and
# the free bytes glibc keeps in its heap afterwards.
CHILD = r'''
import ctypes, json, resource, sys
from suite import host_memory
applied = host_memory.keep_freed_memory() if sys.argv[1] == 'keep' else False
libc = ctypes.CDLL('libc.so.6')
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
class Mallinfo2(ctypes.Structure):
  _fields_ = [(name, ctypes.c_size_t) for name in (
      'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks',
      'fordblks', 'keepcost')]
if not hasattr(libc, 'mallinfo2'):  # glibc < 2.33
  print(json.dumps(None))
  sys.exit(0)
libc.mallinfo2.restype = Mallinfo2
size = 64 << 20
faults = []
for _ in range(3):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  block = libc.malloc(size)
  libc.memset(block, 1, size)
  libc.free(block)
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({'applied': applied, 'faults': faults, 'kept': libc.mallinfo2().fordblks,
                  'describe': host_memory.describe()}))
'''


def _run(mode: str) -> dict:
  # glibc's stock settings: no MALLOC_* / GLIBC_TUNABLES overrides from the caller's shell
  env = {k: v for k, v in os.environ.items()
         if not k.startswith('MALLOC_') and k != 'GLIBC_TUNABLES'}
  done = subprocess.run([sys.executable, '-c', CHILD, mode], capture_output=True, text=True,
                        timeout=120, check=True, env=env)
  report = json.loads(done.stdout)
  if report is None:
    pytest.skip('glibc without mallinfo2 (before 2.33)')
  return report


def test_freed_blocks_are_kept_and_reused_without_page_faults():
  report = _run('keep')
  assert report['applied'] is True and 'suite.host_memory' in report['describe']
  assert report['kept'] >= 64 << 20  # the freed block stays in the heap
  assert max(report['faults'][1:]) < 1000  # 64 MiB in 4 KiB pages would be 16,384 faults


def test_glibc_default_returns_large_blocks_to_the_system():
  report = _run('default')
  assert report['applied'] is False and report['describe'] == 'system default'
  assert report['kept'] < 64 << 20  # unmapped on free: the reason for suite.host_memory
