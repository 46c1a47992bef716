"""Mesh TensorFlow T5 checkpoints: from_mesh_tf equals from_hf on the same weights; errors.

The fixtures write real Mesh-TF model folders: an operative_config.gin in the layout Mesh TF
prints, and `model.ckpt-{step}` files saved by TF's v1 Saver under Mesh-TF T5's variable names
and layouts, with Adafactor slots, `global_step` and one variable split into `_slice_K`
pieces. The weights are a small random transformers T5 (one per step), exported by hand.
"""

import functools
import os
import re
import shutil
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')
tf = pytest.importorskip('tensorflow')

from text import gin_config, mesh_tf, t5  # noqa: E402

VOCAB = 128  # a multiple of Mesh-TF's vocab_divisor, as every Mesh-TF vocabulary is
# Depths differ, heads * d_kv = 36 != d_model = 32, 16 relative buckets (not the default 32).
CONFIG = dict(vocab_size=VOCAB, d_model=32, d_ff=48, d_kv=12, num_heads=3, num_layers=2,
              num_decoder_layers=3, dropout_rate=0.0, relative_attention_num_buckets=16)
# T5 v1.0 with the legacy LayerStack names (layer_norm, final_layer_norm) in float32, one
# variable split along the vocabulary; T5.1.1 with the newer rms_norm names, stored in bfloat16,
# one variable split along d_ff.
VARIANTS = {
    'v1_0_relu_tied': dict(hf={}, legacy_norms=True, bfloat16=False,
                           split=('shared/embedding', 0)),
    'v1_1_gated_untied': dict(
        hf=dict(feed_forward_proj='gated-gelu', tie_word_embeddings=False), legacy_norms=False,
        bfloat16=True, split=('encoder/block_001/layer_001/DenseReluDense/wi_0/kernel', 1)),
}
STEPS = {100: 1, 200: 0}  # step -> seed of the transformers model saved at that step


def _tied(variant):
  return VARIANTS[variant]['hf'].get('tie_word_embeddings', True)


def _hf_model(variant, seed):
  spec = VARIANTS[variant]
  torch.manual_seed(seed)
  model = transformers.T5ForConditionalGeneration(
      transformers.T5Config(**CONFIG, **spec['hf'])).eval()
  if not _tied(variant):  # transformers 5.x ties lm_head at init; give it its own values
    model.lm_head.weight = torch.nn.Parameter(torch.randn(VOCAB, 32) * 32 ** -0.5)
  if spec['bfloat16']:  # values a bfloat16 checkpoint can hold exactly
    with torch.no_grad():
      for p in model.parameters():
        p.copy_(p.to(torch.bfloat16).to(torch.float32))
  return model


def _mesh_tf_tensors(model, legacy_norms, tied):
  """The model's weights under Mesh-TF T5's names, in Mesh-TF's [in, out] layouts."""
  norm, final = ('layer_norm', 'final_layer_norm') if legacy_norms else ('rms_norm', 'rms_norm')
  out = {}
  for name, tensor in model.state_dict().items():
    array = tensor.numpy()
    block = re.fullmatch(r'(encoder|decoder)\.block\.(\d+)\.layer\.(\d+)\.(.+)\.weight', name)
    if name == 'shared.weight':
      out['shared/embedding'] = array  # [vocab, d_model]
    elif name == 'lm_head.weight':
      if not tied:
        out['decoder/logits/kernel'] = array.T  # [d_model, vocab]
    elif name.endswith('final_layer_norm.weight'):
      out[f'{name.split(".")[0]}/{final}/scale'] = array
    elif block:
      stack, i, j, rest = block.groups()
      prefix = f'{stack}/block_{int(i):03d}/layer_{int(j):03d}'
      if rest == 'layer_norm':
        out[f'{prefix}/{norm}/scale'] = array
      elif rest.startswith('DenseReluDense.'):  # wi [d_model, d_ff], wo [d_ff, d_model]
        out[f'{prefix}/DenseReluDense/{rest.split(".")[1]}/kernel'] = array.T
      else:  # q, k, v [d_model, heads*d_kv]; o [heads*d_kv, d_model]; bias [heads, buckets]
        out[f'{prefix}/{rest.replace(".", "/")}'] = array.T
    elif not name.endswith('embed_tokens.weight'):
      raise AssertionError(f'unexpected transformers tensor {name}')
  return out


def _write_checkpoint(model_dir, step, tensors, bfloat16=False, split=None):
  """model.ckpt-{step}.* with the weights, Adafactor slots, global_step and one split variable."""
  arrays = {}
  for name, array in tensors.items():
    if split and name == split[0]:
      for k, piece in enumerate(np.split(array, 2, axis=split[1])):
        arrays[f'{name}_slice_{k}'] = piece
    else:
      arrays[name] = array
    if array.ndim == 2:  # factored second moments
      arrays[f'{name}_slot_vr'] = np.ones(array.shape[0], np.float32)
      arrays[f'{name}_slot_vc'] = np.ones(array.shape[1], np.float32)
    else:
      arrays[f'{name}_slot_v'] = np.ones_like(array)
  with tf.Graph().as_default():
    variables = {'global_step': tf.compat.v1.Variable(np.int64(step), name='global_step')}
    for i, (name, array) in enumerate(arrays.items()):
      value = tf.constant(array, dtype=tf.bfloat16 if bfloat16 else tf.float32)
      variables[name] = tf.compat.v1.Variable(value, name=f'v{i}')
    saver = tf.compat.v1.train.Saver(var_list=variables)
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      saver.save(session, os.path.join(model_dir, 'model.ckpt'), global_step=step)


def _operative_config(variant, **changes):
  """An operative_config.gin as Mesh TF writes it for this variant's shape."""
  spec = VARIANTS[variant]
  activation = "['gelu', 'linear']" if 'gated' in variant else "'relu'"
  tied = _tied(variant)
  lines = [
      'import mesh_tensorflow.optimize', 'import mesh_tensorflow.transformer.transformer',
      'import mesh_tensorflow.transformer.transformer_layers', 'import t5.models.mesh_transformer',
      '', '# Macros:', '# ' + '=' * 78,
      'd_ff = 48', 'd_kv = 12', 'd_model = 32', 'dropout_rate = 0.0',
      "MIXTURE_NAME = 'c4_v220_span_corruption'", 'num_heads = 3', 'num_layers = 3', '',
      '# Parameters for AdafactorOptimizer:', '# ' + '=' * 78,
      'AdafactorOptimizer.decay_rate = None', 'AdafactorOptimizer.epsilon1 = 1e-30',
      'AdafactorOptimizer.min_dim_size_to_factor = 128', '',
      '# Parameters for Bitransformer:', 'Bitransformer.shared_embedding = True', '',
      '# Parameters for enc_dec_attention:', '# None.', '',
      'decoder/EncDecAttention.relative_attention_type = None',
      "get_variable_dtype.activation_dtype = 'bfloat16'",
      "make_bitransformer.decoder_name = 'decoder'",
      "make_bitransformer.encoder_name = 'encoder'",
      'run.batch_size = (\'tokens_per_batch\', 65536)',
      'run.layout_rules = \\',
      "    'ensemble:ensemble,batch:batch,d_ff:model,heads:model,vocab:model,experts:batch'",
      'run.learning_rate_schedule = @learning_rate_schedules.learning_rate_schedule_noam',
      'run.mesh_shape = @mesh_tensorflow.transformer.utils.tpu_mesh_shape()',
      "run.model_type = 'bitransformer'",
      "run.sequence_length = {'inputs': 512, 'targets': 114}",
      'run.train_steps = 524288', 'sublayer_rms_norm.epsilon = 1e-06',
      "sublayer_rms_norm.name = 'rms_norm'", 'unit_scaling_convention.value = False',
      'VocabEmbedding.scale_variable_like_classifier_weights = False',
  ]
  for stack, depth in (('decoder', '%num_layers'), ('encoder', '2')):
    layers = ['SelfAttention', 'EncDecAttention'] if stack == 'decoder' else ['SelfAttention']
    refs = ',\n'.join(f'@mesh_tensorflow.transformer.transformer_layers.{name}'
                      for name in (*layers, 'DenseReluDense'))
    lines += [
        '', f'# Parameters for {stack}/DenseReluDense:', '# ' + '=' * 78,
        f'{stack}/DenseReluDense.activation = {activation}',
        f'{stack}/DenseReluDense.dropout_rate = %dropout_rate',
        f'{stack}/DenseReluDense.hidden_size = %d_ff',
        f'{stack}/DenseReluDense.use_bias = False',
        f'{stack}/make_layer_stack.block_scope = True',
        f'{stack}/make_layer_stack.layers = \\', f'[{refs}]',
        f'{stack}/make_layer_stack.num_layers = {depth}',
        f'{stack}/SelfAttention.attention_kwargs = None',
        f'{stack}/SelfAttention.combine_dims = True',
        f'{stack}/SelfAttention.fold_scaling_into_initializer = True',
        f'{stack}/SelfAttention.key_value_size = %d_kv',
        f'{stack}/SelfAttention.num_heads = %num_heads',
        f'{stack}/SelfAttention.num_memory_heads = 0',
        f'{stack}/SelfAttention.relative_attention_num_buckets = 16',
        f"{stack}/SelfAttention.relative_attention_type = 'bias_shared'",
        f'{stack}/SelfAttention.shared_kv = False',
        f'{stack}/Unitransformer.d_model = %d_model',
        f'{stack}/Unitransformer.ensemble = None',
        f'{stack}/Unitransformer.positional_embedding = False',
        f'{stack}/Unitransformer.shared_embedding_and_softmax_weights = {tied}',
        f'{stack}/Unitransformer.vocab_divisor = 128',
    ]
    if spec['legacy_norms']:
      lines += [f'{stack}/LayerStack.dropout_rate = %dropout_rate',
                f'{stack}/LayerStack.norm_epsilon = 1e-06']
    else:
      lines += [f'{stack}/LayerStack.dropout_rate = None',
                f'{stack}/LayerStack.norm_epsilon = None',
                f'{stack}/LayerStack.sublayers_final = \\',
                '[@transformer.sublayer_rms_norm, @transformer.sublayer_dropout]',
                f'{stack}/LayerStack.sublayers_initial = [@transformer.sublayer_dropout]',
                f'{stack}/LayerStack.sublayers_per_layer = \\',
                '[@transformer.sublayer_rms_norm,\n@transformer.sublayer_call_layer,\n'
                '@transformer.sublayer_dropout,\n@transformer.sublayer_residual]']
  text = '\n'.join(lines) + '\n'
  for old, new in changes.items():
    assert re.search(old, text, flags=re.M), old
    text = re.sub(old, new, text, flags=re.M)
  return text


@pytest.fixture(scope='module', params=list(VARIANTS))
def folder(request, tmp_path_factory):
  """A Mesh-TF model folder with steps 100 and 200, and the transformers model of each step."""
  variant, spec = request.param, VARIANTS[request.param]
  root = tmp_path_factory.mktemp(variant)
  model_dir = root / 'bi_v1_tiny_test'
  model_dir.mkdir()
  (model_dir / mesh_tf.OPERATIVE_CONFIG).write_text(_operative_config(variant))
  models, hf_dirs = {}, {}
  for step, seed in STEPS.items():
    models[step] = _hf_model(variant, seed)
    hf_dirs[step] = str(root / f'hf-{step}')
    models[step].save_pretrained(hf_dirs[step])
    tensors = _mesh_tf_tensors(models[step], spec['legacy_norms'], _tied(variant))
    _write_checkpoint(str(model_dir), step, tensors, spec['bfloat16'], spec['split'])
  return types.SimpleNamespace(variant=variant, dir=str(model_dir), models=models,
                               hf_dirs=hf_dirs)


@functools.partial(jax.jit, static_argnums=0)
def _logits(network, params, encoder, decoder):
  return network.apply({'params': params}, encoder, decoder)


def _inputs():
  rng = np.random.default_rng(0)
  encoder = rng.integers(1, VOCAB, (2, 40))
  decoder = rng.integers(0, VOCAB, (2, 30))
  decoder[:, 0] = 0
  return encoder, decoder


def test_shape_from_operative_config(folder):
  network, _ = t5.from_mesh_tf(folder.dir)
  shape = network.shape
  assert (shape.num_encoder_layers, shape.num_decoder_layers) == (2, 3)
  assert (shape.d_model, shape.d_ff, shape.num_heads, shape.d_kv) == (32, 48, 3, 12)
  assert (shape.vocab_size, shape.relative_buckets, shape.relative_max_distance) == (128, 16, 128)
  gated = folder.variant == 'v1_1_gated_untied'
  assert shape.activation == ('gated-gelu' if gated else 'relu')
  assert shape.tie_embeddings is not gated
  assert network.layer_norm_epsilon == 1e-6 and network.dropout_rate == 0.0


@pytest.mark.parametrize('step', [None, 100])
def test_logits_equal_from_hf_on_the_same_weights(folder, step):
  network, params = t5.from_mesh_tf(folder.dir, step=step)
  hf_step = max(STEPS) if step is None else step  # default: the latest step
  hf_network, hf_params = t5.from_hf(folder.hf_dirs[hf_step])
  assert network == hf_network
  assert jax.tree.all(jax.tree.map(np.array_equal, params, hf_params))
  encoder, decoder = _inputs()
  ours = np.asarray(_logits(network, params, jnp.asarray(encoder), jnp.asarray(decoder)))
  theirs = np.asarray(_logits(hf_network, hf_params, jnp.asarray(encoder), jnp.asarray(decoder)))
  np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)
  with torch.no_grad():
    reference = folder.models[hf_step](input_ids=torch.tensor(encoder),
                                       decoder_input_ids=torch.tensor(decoder)).logits.numpy()
  np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_checkpoint_holds_optimizer_state_and_slices(folder):
  """What the fixture proves from_mesh_tf skips and joins is really in the checkpoint."""
  names = dict(tf.train.list_variables(os.path.join(folder.dir, 'model.ckpt-200')))
  split_name = VARIANTS[folder.variant]['split'][0]
  assert f'{split_name}_slice_0' in names and split_name not in names
  assert 'global_step' in names
  assert {'_slot_v', '_slot_vr', '_slot_vc'} <= {n[n.rfind('_slot_'):] for n in names
                                                  if '_slot_' in n}
  dtypes = tf.train.load_checkpoint(os.path.join(folder.dir, 'model.ckpt-200')
                                    ).get_variable_to_dtype_map()
  expected = tf.bfloat16 if VARIANTS[folder.variant]['bfloat16'] else tf.float32
  assert dtypes['decoder/block_000/layer_000/SelfAttention/q'] == expected
  assert mesh_tf.checkpoint_steps(folder.dir) == [100, 200]


# ---- bad input --------------------------------------------------------------------------------

V10 = 'v1_0_relu_tied'


def _folder(tmp_path, gin_text, tensors=None, step=200):
  model_dir = tmp_path / 'bi_v1_bad'
  model_dir.mkdir(parents=True)
  (model_dir / mesh_tf.OPERATIVE_CONFIG).write_text(gin_text)
  if tensors is not None:
    _write_checkpoint(str(model_dir), step, tensors)
  return str(model_dir)


@pytest.fixture(scope='module')
def v10_tensors():
  return _mesh_tf_tensors(_hf_model(V10, 0), legacy_norms=True, tied=True)


def test_missing_step_lists_the_steps_present(folder):
  with pytest.raises(t5.CheckpointError, match=r'no checkpoint at step 300; steps present: '
                                               r'100, 200'):
    t5.from_mesh_tf(folder.dir, step=300)


@pytest.mark.parametrize('drop, message', [
    (r'^\w+/SelfAttention\.key_value_size = %d_kv\n',
     r'no binding for encoder/SelfAttention\.key_value_size \(or SelfAttention'),
    (r'^decoder/make_layer_stack\.num_layers = .*\n',
     r'no binding for decoder/make_layer_stack\.num_layers'),
    (r'^d_model = 32\n', r'uses macro %d_model, which the file never defines'),
])
def test_missing_gin_binding_names_file_and_binding(tmp_path, drop, message):
  model_dir = _folder(tmp_path, _operative_config(V10, **{drop: ''}))
  with pytest.raises(t5.CheckpointError, match=message) as error:
    t5.from_mesh_tf(model_dir)
  assert os.path.join(model_dir, 'operative_config.gin') in str(error.value)


@pytest.mark.parametrize('pattern, replacement, message', [
    ("'bias_shared'", "'bias'", r"relative_attention_type = 'bias' means .*one per layer"),
    ("= 'relu'", "= 'gelu'", r"activation = 'gelu' is not supported; valid: 'relu'"),
    ('positional_embedding = False', 'positional_embedding = True',
     r'positional_embedding = True means learned absolute position embeddings'),
    (r'^\w+/Unitransformer\.positional_embedding = False\n', '',
     r'no binding for Unitransformer\.positional_embedding; Mesh TensorFlow then uses True'),
    (r'^encoder/SelfAttention\.num_heads = %num_heads', 'encoder/SelfAttention.num_heads = 4',
     r'encoder/SelfAttention\.num_heads = 4 but decoder/SelfAttention\.num_heads = 3'),
])
def test_unsupported_gin_bindings(tmp_path, pattern, replacement, message):
  model_dir = _folder(tmp_path, _operative_config(V10, **{pattern: replacement}))
  with pytest.raises(t5.CheckpointError, match=message):
    t5.from_mesh_tf(model_dir)


def test_wrong_shape_names_the_variable(tmp_path, v10_tensors):
  name = 'decoder/block_001/layer_002/DenseReluDense/wo/kernel'
  tensors = dict(v10_tensors, **{name: np.zeros((49, 32), np.float32)})
  model_dir = _folder(tmp_path, _operative_config(V10), tensors)
  with pytest.raises(t5.CheckpointError, match=rf"variable '{name}' has shape \(49, 32\) but "
                                               r'.*operative_config\.gin implies \(48, 32\)'):
    t5.from_mesh_tf(model_dir)


def test_missing_and_unknown_variables(tmp_path, v10_tensors):
  name = 'encoder/block_001/layer_000/SelfAttention/k'
  tensors = {k: v for k, v in v10_tensors.items() if k != name}
  with pytest.raises(t5.CheckpointError, match=rf"variable '{name}' is missing"):
    t5.from_mesh_tf(_folder(tmp_path / 'missing', _operative_config(V10), tensors))
  # A third encoder block, which the gin's 2 encoder layers have no place for.
  extra = 'encoder/block_002/layer_000/SelfAttention/q'
  tensors = dict(v10_tensors, **{extra: v10_tensors[name]})
  with pytest.raises(t5.CheckpointError, match=rf"1 variable\(s\) that .* has no place for: "
                                               rf"'{extra}'"):
    t5.from_mesh_tf(_folder(tmp_path / 'extra', _operative_config(V10), tensors))


def test_missing_folder_config_and_checkpoints(tmp_path):
  with pytest.raises(t5.CheckpointError, match='not a directory'):
    t5.from_mesh_tf(str(tmp_path / 'absent'))
  with pytest.raises(t5.CheckpointError, match='operative_config.gin: missing'):
    t5.from_mesh_tf(str(tmp_path))
  with pytest.raises(t5.CheckpointError, match=r'no model\.ckpt-\*\.index file'):
    t5.from_mesh_tf(_folder(tmp_path, _operative_config(V10)))


def test_truncated_data_file(tmp_path, folder):
  model_dir = tmp_path / 'copy'
  shutil.copytree(folder.dir, model_dir)
  (model_dir / 'model.ckpt-200.data-00000-of-00001').write_bytes(b'')
  with pytest.raises(t5.CheckpointError, match=r'model\.ckpt-200: cannot read'):
    t5.from_mesh_tf(str(model_dir))


def test_parse_gin_subset():
  gin = gin_config.parse_gin(
      'import a.b  # comment\n'
      'width = 64\n'
      'size = %width\n'
      'Layer.size = %size\n'
      'encoder/Layer.size = 8\n'
      'utils.run.shape = {\'x\': (1, -2.5e-3), "y": [@a.B, @c/d.E()]}\n'
      'run.names = [\n  \'p\' \'q\',  # joined\n  None, True,\n]\n'
      'run.one = (1)\n', 'x.gin')
  assert gin.get('Layer', 'size', 'encoder') == 8
  assert gin.get('Layer', 'size', 'decoder') == 64  # unscoped binding, through two macros
  assert gin.get('run', 'shape') == {'x': (1, -0.0025), 'y': [
      gin_config.Reference('a.B', False), gin_config.Reference('c/d.E', True)]}
  assert gin.get('run', 'names') == ['pq', None, True] and gin.get('run', 'one') == 1
  assert gin.get('run', 'absent', default=3) == 3
  with pytest.raises(t5.CheckpointError, match=r'x\.gin:2: expected "," or "\]"'):
    gin_config.parse_gin('a = 1\nF.x = [1 2]\n', 'x.gin')
  with pytest.raises(t5.CheckpointError, match=r'x\.gin: cannot tokenize'):
    gin_config.parse_gin('F.x = [1,\n', 'x.gin')
  with pytest.raises(t5.CheckpointError, match=r'x\.gin:1: `include` is not supported'):
    gin_config.parse_gin("include 'other.gin'\n", 'x.gin')
