"""tasks.metrics: golden values computed by hand, cross-checked with scikit-learn and scipy."""

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics

from tasks import metrics


def test_accuracy_counts_invalid_as_wrong():
  assert metrics.accuracy([0, 1, 1, 0], [0, 1, 0, -1]) == {'accuracy': 50.0}


def test_matthews_by_hand():
  # TP=2 TN=2 FP=1 FN=1: (2*2 - 1*1) / sqrt(3*3*3*3) = 1/3.
  value = metrics.matthews_corrcoef([1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 1])
  assert value['matthews_corrcoef'] == pytest.approx(100 / 3)
  assert metrics.matthews_corrcoef([1, 0, 1], [1, 1, 1]) == {'matthews_corrcoef': 0.0}


def test_f1_with_invalid_flips_invalid_to_wrong():
  # idx 1 (target 1) invalid -> a false negative; idx 3 (target 0) invalid -> a false positive.
  # TP=1 FP=1 FN=1: F1 = 2/(2+1+1).
  assert metrics.f1_with_invalid([1, 1, 0, 0], [1, -1, 0, -1]) == {'f1': 50.0}


def test_mean_multiclass_f1_by_hand():
  # class 0: P=1 R=1/2; class 1: P=1/2 R=1; class 2: never predicted -> 0.
  value = metrics.mean_multiclass_f1(3)([0, 0, 1, 2], [0, 1, 1, -1])
  assert value == {'mean_3class_f1': pytest.approx(100 * (2 / 3 + 2 / 3 + 0) / 3)}


def test_correlations_by_hand():
  # Ranks differ in one swapped pair: rho = 1 - 6 * 2 / (4 * 15) = 0.8; Pearson is also 0.8.
  assert metrics.spearman_corrcoef([1, 2, 3, 4], [1, 3, 2, 4]) == {
    'spearman_corrcoef': pytest.approx(80.0)}
  assert metrics.pearson_corrcoef([1, 2, 3, 4], [1, 3, 2, 4]) == {
    'pearson_corrcoef': pytest.approx(80.0)}
  assert metrics.pearson_corrcoef([1, 2, 3, 4], [2, 4, 6, 8])['pearson_corrcoef'] == (
    pytest.approx(100.0))


def test_classification_metrics_agree_with_sklearn_and_scipy():
  rng = np.random.default_rng(0)
  targets = rng.integers(0, 3, size=200)
  predictions = np.where(rng.random(200) < 0.1, -1, rng.integers(0, 3, size=200))
  assert metrics.accuracy(targets, predictions)['accuracy'] == pytest.approx(
    100 * sklearn.metrics.accuracy_score(targets, predictions))
  assert metrics.mean_multiclass_f1(3)(targets, predictions)['mean_3class_f1'] == pytest.approx(
    100 * sklearn.metrics.f1_score(targets, predictions, labels=[0, 1, 2], average='macro'))
  binary, binary_pred = targets % 2, np.where(predictions < 0, -1, predictions % 2)
  fixed = np.where(binary_pred < 0, 1 - binary, binary_pred)
  assert metrics.f1_with_invalid(binary, binary_pred)['f1'] == pytest.approx(
    100 * sklearn.metrics.f1_score(binary, fixed))
  assert metrics.matthews_corrcoef(binary, binary_pred)['matthews_corrcoef'] == pytest.approx(
    100 * sklearn.metrics.matthews_corrcoef(binary, binary_pred))
  x, y = rng.random(50), rng.random(50)
  assert metrics.pearson_corrcoef(x, y)['pearson_corrcoef'] == pytest.approx(
    100 * scipy.stats.pearsonr(x, y)[0])
  assert metrics.spearman_corrcoef(x, y)['spearman_corrcoef'] == pytest.approx(
    100 * scipy.stats.spearmanr(x, y)[0])


def _mrc(values, groups=None):
  if groups is None:
    return [{'value': v} for v in values]
  return [{'value': v, 'group': g} for v, g in zip(values, groups, strict=True)]


def test_multirc_groups_by_paragraph_and_question():
  groups = ['0/0', '0/0', '0/0', '0/1', '0/1', '1/0', '1/0']
  targets = _mrc([1, 0, 1, 1, 0, 1, 0], groups)
  predictions = _mrc([1, 0, 1, 1, 1, 1, 0])
  # Questions (0,0) and (1,0) all right, (0,1) wrong: 2 of 3. Grouping by the question idx
  # alone would merge (0,0) with (1,0) and give 1 of 2.
  assert metrics.multirc_exact_match(targets, predictions) == {
    'exact_match': pytest.approx(200 / 3)}
  # F1a over all 7 answers: TP=4 FP=1 FN=0.
  assert metrics.multirc_f1a(targets, predictions) == {'f1': pytest.approx(100 * 8 / 9)}


def test_squad_normalization():
  assert metrics.normalize_answer('The  Cat, an apple!') == 'cat apple'
  assert metrics.normalize_answer('Theatre') == 'theatre'
  assert metrics.normalize_answer(" U.S.  Army's ") == 'us armys'


def test_token_f1_and_exact_match():
  # 'cat sat' vs 'cat sat on mat': P = 1, R = 1/2.
  assert metrics.token_f1_score('the cat sat', 'a cat sat on the mat') == pytest.approx(2 / 3)
  assert metrics.token_f1_score('dog', 'cat') == 0.0
  assert metrics.exact_match_score('The Broncos.', 'broncos') == 1.0


def test_squad_takes_max_over_gold_answers():
  targets = [['Denver Broncos', 'Broncos'], ['Denver Broncos', 'Broncos']]
  predictions = ['broncos', 'Denver']
  # Example 1: EM 1, F1 1. Example 2: EM 0, F1 = max(2 * 1 * 0.5 / 1.5, 0) = 2/3.
  assert metrics.squad(targets, predictions) == {
    'em': pytest.approx(50.0), 'f1': pytest.approx(100 * (1 + 2 / 3) / 2)}


def test_squad_needs_gold_answers():
  with pytest.raises(ValueError, match='no gold answers'):
    metrics.squad([[]], ['x'])


@pytest.mark.parametrize('text, trivia_qa, squad', [
  ('Mary-Kate', 'mary kate', 'marykate'),  # punctuation is a space, not deleted
  ('new_york', 'new york', 'newyork'),  # so is the underscore
  ('\u2018The Beatles\u2019', 'beatles', '\u2018 beatles\u2019'),  # and curly quotes
  ('Rock \u00b4n\u00b4 roll', 'rock n roll', 'rock \u00b4n\u00b4 roll'),  # and the acute
  ('A.B.C.', 'b c', 'abc'),  # 'a b c': the spaced-out 'a' is then an article
  ('  The  Cat, an apple! ', 'cat apple', 'cat apple'),
])
def test_trivia_qa_normalization_differs_from_squad(text, trivia_qa, squad):
  """T5's `normalize_trivia_qa` (the official TriviaQA script's) against SQuAD's."""
  assert metrics.normalize_trivia_qa(text) == trivia_qa
  assert metrics.normalize_answer(text) == squad


def test_trivia_qa_by_hand():
  targets = [['Mary-Kate Olsen', 'MK Olsen'], ['Sartre'], ['\u2018The Beatles\u2019']]
  predictions = ['mary kate olsen', 'Jean-Paul Sartre', 'Beatles']
  # TriviaQA: 1) 'mary kate olsen' equals the first alias: EM 1, F1 1. 2) [jean paul sartre]
  # vs [sartre]: EM 0, P 1/3, R 1 -> F1 1/2. 3) 'beatles' both: EM 1, F1 1.
  assert metrics.trivia_qa(targets, predictions) == {
    'em': pytest.approx(200 / 3), 'f1': pytest.approx(250 / 3)}
  # SQuAD's normalisation matches none: 1) [mary kate olsen] vs [marykate olsen]: P 1/3,
  # R 1/2 -> F1 0.4. 2) [jeanpaul sartre] vs [sartre]: P 1/2, R 1 -> 2/3. 3) [beatles] vs
  # [\u2018 beatles\u2019]: 0. F1 (0.4 + 2/3) / 3 = 16/45.
  assert metrics.squad(targets, predictions) == {
    'em': 0.0, 'f1': pytest.approx(100 * 16 / 45)}


def test_trivia_qa_as_t5s_own_test():
  # t5/evaluation/metrics_test.py test_trivia_qa: the same inputs give EM 50, F1 50 there
  # (SQuAD scoring gives EM 25, F1 35 on them, T5's test_squad_big).
  targets = [['big moose', 'hippo'], ['correct1'], ['correct2.1', 'correct2.2'], ['a', 'b']]
  predictions = ['\u2018a big  Moose!\u2018', 'wrong', 'correct2.2', 'c']
  assert metrics.trivia_qa(targets, predictions) == {
    'em': pytest.approx(50.0), 'f1': pytest.approx(50.0)}
  assert metrics.squad(targets, predictions) == {
    'em': pytest.approx(25.0), 'f1': pytest.approx(35.0)}


def test_label_postprocessors():
  labels = ('entailment', 'neutral', 'contradiction')
  assert metrics.string_label_to_class_id('entailment', labels) == 0
  assert metrics.string_label_to_class_id(b'neutral', labels) == 1
  assert metrics.string_label_to_class_id(' entailment', labels) == -1
  assert metrics.string_to_float('3.8') == 3.8
  assert metrics.string_to_float('three') == -1.0


@pytest.mark.parametrize('text, expected', [
  ('3.8', 3.8), (b'5.0', 5.0), (' 0.4 ', 0.4), ('2', 2.0), ('-1.2', -1.2), ('+.5', 0.5),
  ('4.', 4.0)])
def test_string_to_float_reads_plain_decimals(text, expected):
  assert metrics.string_to_float(text) == expected


@pytest.mark.parametrize('text', [
  'nan', 'NaN', '-nan', 'inf', '-inf', 'Infinity', '1e400', '1e2', '1_0', '\u0663.\u0668',
  '\uff13', '9' * 400, '', '.', '-', '3.8.1', 'three', '0x10'])
def test_string_to_float_rejects_everything_else(text):
  assert metrics.string_to_float(text) == -1.0
  assert metrics.string_to_float(text, default=0.0) == 0.0


def test_a_nan_prediction_does_not_poison_stsb_correlations():
  targets = [metrics.string_to_float(t) for t in ('1.0', '2.0', '3.0', '4.0')]
  predictions = [metrics.string_to_float(p) for p in ('1.2', '2.2', '3.4', 'nan')]
  values = {**metrics.pearson_corrcoef(targets, predictions),
            **metrics.spearman_corrcoef(targets, predictions)}
  assert all(np.isfinite(v) for v in values.values()), values


@pytest.mark.parametrize('prediction, referent, expected', [
  ('the city councilmen', 'The city councilmen', 1),
  ('councilmen', 'The city councilmen', 1),  # subset of the referent's words
  ('the fuzzy bunny', 'bunny', 1),  # superset
  ('the demonstrators', 'The city councilmen', 0),
  ('Bob', "Bob's hat", 0),  # a possessive on one side only
  ('', 'Bob', -1),
  ('The', 'Bob', -1),  # only a determiner: empty after cleaning
])
def test_wsc_referent_rule(prediction, referent, expected):
  assert metrics.wsc_predicts_referent(prediction, referent) == expected
