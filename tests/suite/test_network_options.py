"""ModelOptions' 'auto' choices per device (suite.domain.ModelOptions.resolved), and where
cuDNN's fused attention runs (suite.network_options), on stand-ins for GPU and TPU devices."""

import dataclasses

import jax
import pytest

from suite import network_options, shapes
from suite.domain import ModelOptions


@dataclasses.dataclass(frozen=True)
class Device:
  """What resolution reads off a jax device."""
  platform: str
  device_kind: str
  compute_capability: str | None = None


H200 = Device('gpu', 'NVIDIA H200', '9.0')
A100 = Device('gpu', 'NVIDIA A100-SXM4-80GB', '8.0')
V100 = Device('gpu', 'Tesla V100-SXM2-16GB', '7.0')
MI300 = Device('gpu', 'AMD Instinct MI300X', 'gfx942')
TPU = Device('tpu', 'TPU v5p')
CPU = Device('cpu', 'cpu')
BASE = shapes.parse('base')  # d_kv 64


@pytest.mark.parametrize('device, expected', [
    (H200, {'dtype': 'bfloat16', 'attention': 'cudnn', 'scan': True}),
    (A100, {'dtype': 'bfloat16', 'attention': 'cudnn', 'scan': True}),
    (V100, {'dtype': 'bfloat16', 'attention': 'xla', 'scan': True}),  # no flash kernel
    (MI300, {'dtype': 'bfloat16', 'attention': 'xla', 'scan': True}),  # not CUDA
    (TPU, {'dtype': 'bfloat16', 'attention': 'xla', 'scan': True}),
    (CPU, {'dtype': 'float32', 'attention': 'xla', 'scan': False}),
])
def test_auto_is_bfloat16_cudnn_and_scan_on_accelerators_and_the_unrolled_float32_step_on_cpu(
    device, expected):
  resolved = ModelOptions(dtype='auto').resolved(BASE, device)
  assert {k: getattr(resolved, k) for k in expected} == expected
  assert resolved.resolved(BASE, device) == resolved  # idempotent


def test_auto_attention_is_xla_where_the_shape_or_dtype_does_not_suit_cudnn():
  options = ModelOptions(dtype='bfloat16')
  wide = shapes.parse('base-kv512')  # head dim 512 > cuDNN's 256
  assert options.resolved(wide, H200).attention == 'xla'
  assert options.resolved(shapes.parse('base-kv256'), H200).attention == 'cudnn'
  assert options.resolved(shapes.parse('base-kv256'), A100).attention == 'xla'  # 128 before 9.0
  assert ModelOptions(dtype='float32').resolved(BASE, H200).attention == 'xla'


def test_explicit_values_stay_and_explicit_cudnn_where_it_cannot_run_says_why():
  options = ModelOptions(dtype='float32', attention='xla', scan=False)
  assert options.resolved(BASE, H200) == options
  assert ModelOptions(scan=True).resolved(BASE, CPU).scan is True
  with pytest.raises(ValueError, match="attention='cudnn' cannot run here: it needs an NVIDIA "
                                       r'GPU, and this device is tpu \(TPU v5p\)'):
    ModelOptions(dtype='bfloat16', attention='cudnn').resolved(BASE, TPU)
  with pytest.raises(ValueError, match='multiples of 8 up to 256 .* d_kv=512'):
    ModelOptions(dtype='bfloat16', attention='cudnn').resolved(shapes.parse('base-kv512'), H200)


def test_the_default_device_is_jaxs_first():
  options = ModelOptions().resolved()
  assert options.scan == (jax.devices()[0].platform != 'cpu')
  assert options.attention in ('xla', 'cudnn') and options.dtype == 'float32'


@pytest.mark.parametrize('domain, name', [('text', 'tiny-nl2'), ('vision', 'Ti/16-nl2')])
def test_models_never_see_auto(domain, name):
  """The domains resolve in build_model, so default options build on any machine."""
  from suite import domains
  shape = shapes.parse(name, domain)
  network = domains.get(domain).build_model(shape, ModelOptions()).network
  expected = ModelOptions().resolved(shape)
  assert (network.scan_layers, network.attention_impl) == (expected.scan, expected.attention)
  assert isinstance(network.scan_layers, bool)


@pytest.mark.parametrize('device, capability', [
    (H200, (9, 0)), (V100, (7, 0)), (MI300, None), (TPU, None), (CPU, None)])
def test_cuda_capability_is_read_off_cuda_gpus_alone(device, capability):
  assert network_options.cuda_capability(device) == capability


def test_a_configs_model_field_lists_every_option_with_scan_auto_unless_set():
  """configs.model: every ModelOptions field, so --config.model.FIELD overrides each; suite.run
  drops the unset (None) scan, which leaves ModelOptions' 'auto'."""
  import ml_collections

  from suite import configs
  model = dict(ml_collections.ConfigDict({'model': configs.model(remat='dots')}).model)
  assert set(model) == {f.name for f in dataclasses.fields(ModelOptions)}
  assert model['scan'] is None and model['remat'] == 'dots' and model['attention'] == 'auto'
  options = ModelOptions(**{k: v for k, v in model.items() if v is not None})
  assert options.scan == 'auto' and options.resolved(BASE, CPU).scan is False
  assert dict(ml_collections.ConfigDict({'model': configs.model(scan=True)}).model)['scan']
  with pytest.raises(ValueError, match=r"model fields \['remats'\]: valid are dtype"):
    configs.model(remats='dots')
