"""The task registry: every task module registered, lookups, closest-name errors."""

import pytest
import seqio

from tasks import extra, images, registry
from tasks.embedded import tasks as embedded


def test_all_areas_are_registered():
  names = set(registry.text_task_names())
  assert set(extra.TASKS) <= names
  assert {embedded.PRETRAIN, *embedded.DOWNSTREAM} <= names
  assert any(n.startswith('glue_') for n in names)  # tasks.benchmark
  assert {'embedded', 'extra', 'glue', 'super_glue'} <= set(registry.text_mixture_names())
  assert set(registry.image_task_names()) == set(images.IMAGE_TASKS)


@pytest.mark.parametrize('name', sorted(extra.TASKS) + sorted(embedded.DOWNSTREAM) + ['embedded'])
def test_get_text_returns_the_provider(name):
  provider = registry.get_text(name)
  assert isinstance(provider, seqio.Task | seqio.Mixture)
  assert provider.name == name
  assert registry.domain_of(name) == registry.TEXT


@pytest.mark.parametrize('name', sorted(images.IMAGE_TASKS))
def test_get_image_returns_the_task(name):
  task = registry.get_image(name)
  assert task.name == name and task.num_classes > 1
  assert registry.domain_of(name) == registry.VISION


@pytest.mark.parametrize('bad,expected', [
  ('embeded_sst', 'embedded_sst_v1'), ('snli', 'snli_v1'), ('xsum_v2', 'xsum_v1')])
def test_unknown_text_name_lists_closest(bad, expected):
  with pytest.raises(registry.TaskNotFoundError, match=expected) as info:
    registry.get_text(bad)
  assert isinstance(info.value, ValueError)
  assert '\n' not in str(info.value)


def test_unknown_image_name_lists_closest():
  with pytest.raises(registry.TaskNotFoundError, match='cifar10'):
    registry.get_image('cifar_10')
  with pytest.raises(registry.TaskNotFoundError, match='oxford_iiit_pet'):
    registry.domain_of('oxford_pets')
