"""Fixtures shared by the task tests."""

import pytest

from tasks import sources
from tests.tasks.fixtures import write_fixtures


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """A --data_dir of original-format GLUE/SuperGLUE/SQuAD files, configured for the module."""
  root = write_fixtures(str(tmp_path_factory.mktemp('data')))
  previous = sources.config()
  sources.configure(data_dir=root)
  yield root
  sources.configure(previous.data_dir, previous.tfds_data_dir)
