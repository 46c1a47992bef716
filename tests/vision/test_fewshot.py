"""Few-shot linear probes: separable and label-free data, independent solves, input checks, and
the evaluation of an image task (the embedded digits' raw pixels)."""

import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifier

from tasks import images
from vision import fewshot

CLASSES, DIM = 10, 32


def _clusters(n, seed, classes=CLASSES, dim=DIM, spread=3.0):
  """Gaussian clusters around fixed class centres; labels cycle through the classes."""
  centres = np.random.default_rng(0).normal(size=(classes, dim)) * spread
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % classes
  return centres[labels] + rng.normal(size=(n, dim)), labels


def test_separable_clusters_are_classified():
  train, train_labels = _clusters(5 * CLASSES, seed=1)  # 5 shots
  test, test_labels = _clusters(1000, seed=2)
  assert fewshot.probe_accuracy(train, train_labels, test, test_labels, CLASSES) >= 0.99
  one_shot = fewshot.probe_accuracy(train[:CLASSES], train_labels[:CLASSES], test, test_labels,
                                    CLASSES)
  assert one_shot >= 0.9


def test_labels_unrelated_to_features_give_chance():
  rng = np.random.default_rng(3)
  train, _ = _clusters(25 * CLASSES, seed=1)
  test, _ = _clusters(2000, seed=2)
  accuracy = fewshot.probe_accuracy(train, rng.permutation(np.arange(len(train)) % CLASSES),
                                    test, rng.integers(0, CLASSES, len(test)), CLASSES)
  assert abs(accuracy - 1 / CLASSES) < 0.03  # 1 / CLASSES +- 4 standard errors


def _independent_weights(features, labels, classes, l2_reg):
  """big_vision's recipe written out, solved by numpy lstsq on the stacked system
  [X; sqrt(l2) I] W = [Y; 0] rather than the normal equations."""
  mean, std = features.mean(0), features.std(0) + 1e-5
  x = np.hstack([(features - mean) / std, np.full((len(features), 1), 100.0)])
  targets = np.where(labels[:, None] == np.arange(classes), 1.0, -1.0)
  stacked = np.vstack([x, np.sqrt(l2_reg) * np.eye(x.shape[1])])
  zeros = np.zeros((x.shape[1], classes))
  return np.linalg.lstsq(stacked, np.vstack([targets, zeros]), rcond=None)[0], mean, std


@pytest.mark.parametrize('examples, dim', [(250, 16), (30, 200)], ids=['primal', 'dual'])
@pytest.mark.parametrize('l2_reg', [fewshot.L2_REG, 0.5])
def test_closed_form_equals_an_independent_least_squares_solve(examples, dim, l2_reg):
  train, labels = _clusters(examples, seed=4, dim=dim, spread=1.0)
  train = train * np.linspace(0.1, 20, dim) + 7.0  # uneven scales and an offset to standardise
  test, _ = _clusters(40, seed=5, dim=dim)
  probe = fewshot.fit_probe(train, labels, CLASSES, l2_reg)
  weights, mean, std = _independent_weights(train, labels, CLASSES, l2_reg)
  np.testing.assert_allclose(probe.weights, weights, rtol=1e-5, atol=1e-5 * np.abs(weights).max())
  scores = np.hstack([(test - mean) / std, np.full((len(test), 1), 100.0)]) @ weights
  np.testing.assert_allclose(fewshot.probe_scores(probe, test), scores, rtol=1e-5,
                             atol=1e-5 * np.abs(scores).max())


@pytest.mark.parametrize('classes', [2, CLASSES])
def test_equals_ridge_classifier_without_intercept_on_standardised_features(classes):
  """The exact scikit-learn mapping: RidgeClassifier(alpha=l2_reg, fit_intercept=False) on
  the standardised features with the constant bias column appended."""
  train, labels = _clusters(6 * classes, seed=6, classes=classes)
  test, test_labels = _clusters(300, seed=7, classes=classes, spread=0.5)  # overlapping: errors
  probe = fewshot.fit_probe(train, labels, classes)

  def augment(x):
    return np.hstack([(x - probe.mean) / probe.std, np.full((len(x), 1), fewshot.BIAS_FEATURE)])

  ridge = RidgeClassifier(alpha=fewshot.L2_REG, fit_intercept=False, solver='cholesky')
  ridge.fit(augment(train), labels)
  if classes == 2:  # one column, the positive class's; ours has both, opposite in sign
    positive = np.ravel(ridge.coef_)
    np.testing.assert_allclose(probe.weights[:, 1], positive, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(probe.weights[:, 0], -positive, rtol=1e-6, atol=1e-12)
  else:
    np.testing.assert_allclose(probe.weights, ridge.coef_.T, rtol=1e-6, atol=1e-12)
  predictions = np.argmax(fewshot.probe_scores(probe, test), axis=1)
  np.testing.assert_array_equal(predictions, ridge.predict(augment(test)))
  accuracy = fewshot.probe_accuracy(train, labels, test, test_labels, classes)
  assert accuracy == pytest.approx(ridge.score(augment(test), test_labels))
  assert 0.5 < accuracy < 1.0  # a comparison that includes mistakes


def _bad(**overrides):
  train, labels = _clusters(2 * CLASSES, seed=8)
  arguments = dict(train_features=train, train_labels=labels, test_features=train,
                   test_labels=labels, num_classes=CLASSES)
  return {**arguments, **overrides}


@pytest.mark.parametrize('overrides, message', [
    (dict(train_features=np.zeros((20, 4, 8))), r'train_features has shape \(20, 4, 8\).*rank 2'),
    (dict(test_features=np.zeros(20)), r'test_features has shape \(20,\).*rank 2'),
    (dict(train_labels=np.zeros((20, 1), int)),
     r'train_labels has shape \(20, 1\); expected \[20\]'),
    (dict(train_labels=np.arange(19) % CLASSES), r'expected \[20\], one label per row'),
    (dict(train_labels=np.arange(20) % CLASSES * 1.0), 'integer class indices'),
    (dict(train_labels=np.arange(20) % 11), r'holds \[10\], outside \[0, 10\)'),
    (dict(test_labels=np.arange(20) % CLASSES - 1), r'test_labels holds \[-1\]'),
    (dict(train_features=np.zeros((5, DIM)), train_labels=np.arange(5)),
     '5 training examples for 10 classes'),
    (dict(train_labels=np.arange(20) % 9), r'classes \[9\] have no training example'),
    (dict(test_features=np.zeros((20, DIM + 1))), 'features have 33 columns.*fitted on 32'),
    (dict(num_classes=1), 'at least 2 classes'),
    (dict(l2_reg=0.0), 'l2_reg=0.0: must be a positive number'),
], ids=['train-rank-3', 'test-rank-1', 'labels-rank-2', 'labels-count', 'float-labels',
        'label-too-large', 'label-negative', 'fewer-examples-than-classes', 'missing-class',
        'feature-width', 'one-class', 'zero-l2'])
def test_bad_inputs_are_named(overrides, message):
  with pytest.raises(ValueError, match=message):
    fewshot.probe_accuracy(**_bad(**overrides))


def test_batched_features_pad_to_one_batch_shape():
  calls = []

  def features(x):
    calls.append(x.shape)
    return x.reshape(len(x), -1)[:, :3] * 2

  images_ = np.random.default_rng(0).normal(size=(10, 2, 2, 3)).astype(np.float32)
  out = fewshot.batched_features(features, images_, batch_size=4)
  assert calls == [(4, 2, 2, 3)] * 3  # the ragged last batch is padded: one compiled shape
  np.testing.assert_array_equal(out, images_.reshape(10, -1)[:, :3] * 2)
  with pytest.raises(ValueError, match=r'returned shape \(4, 2, 2, 3\) for 4 images'):
    fewshot.batched_features(lambda x: x, images_, batch_size=4)


# ---- an image task end to end: raw pixels of the embedded digits (8x8, 5 few-shot classes) -----

SEEDS = (0, 1)


@pytest.fixture(scope='module')
def digits_pixels():
  return fewshot.pixel_baseline(images.DIGITS_FEWSHOT, seeds=SEEDS, image_size=8)


def test_pixel_baseline_reports_every_shot_count(digits_pixels):
  name = images.DIGITS_FEWSHOT
  assert list(digits_pixels) == [f'fewshot_pixels/{name}/{k}shot' for k in (1, 5, 10, 25)]
  accuracy = list(digits_pixels.values())
  assert 0.2 < accuracy[0] < accuracy[-1]  # above chance (1/5) at one shot, better with more
  assert accuracy[-1] > 0.85


def test_each_shot_count_is_the_mean_over_seeds_of_its_own_draw(digits_pixels):
  """The k-shot examples taken from the 25-shot draw are tasks.images' own k-shot draw."""
  task = images.get(images.DIGITS_FEWSHOT)
  test = list(images.eval_dataset(task, 1000, image_size=8).as_numpy_iterator())[0]
  accuracies = []
  for seed in SEEDS:
    x, y = images.fewshot_arrays(task, 5, seed, image_size=8)
    accuracies.append(fewshot.probe_accuracy(fewshot.pixel_features(x), y,
                                             fewshot.pixel_features(test['image']),
                                             test['label'], task.num_classes))
  assert accuracies[0] != accuracies[1]  # the seeds draw different examples
  assert digits_pixels[f'fewshot_pixels/{task.name}/5shot'] == pytest.approx(np.mean(accuracies))


def test_fewshot_eval_keys_and_checks():
  task = images.get(images.DIGITS_FEWSHOT)
  with pytest.raises(ValueError, match='need positive counts'):
    fewshot.fewshot_eval(fewshot.pixel_features, task, shots=(0, 5))
  with pytest.raises(ValueError, match='seeds is empty'):
    fewshot.fewshot_eval(fewshot.pixel_features, task, seeds=())
