"""The vocabulary: deterministic embedded model, T5 layout, lazy resolution, configure()."""

import hashlib

import pytest
import sentencepiece
import seqio

from tasks import vocab


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
  monkeypatch.setenv(vocab.CACHE_ENV, str(tmp_path_factory.getbasetemp() / 'vocab-cache'))
  yield
  vocab.configure(None)


def _digest(path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def test_training_twice_gives_identical_bytes(tmp_path):
  first = vocab.train_embedded_model(tmp_path / 'a')
  second = vocab.train_embedded_model(tmp_path / 'b')
  assert first.name == second.name
  assert _digest(first) == _digest(second)
  assert not list((tmp_path / 'a').glob('*.tmp'))  # written atomically, no leftovers


def test_cached_model_is_reused(tmp_path):
  path = vocab.train_embedded_model(tmp_path)
  stamp = path.stat().st_mtime_ns
  assert vocab.train_embedded_model(tmp_path) == path
  assert path.stat().st_mtime_ns == stamp


def test_cache_key_covers_settings(monkeypatch):
  key = vocab.embedded_model_key()
  monkeypatch.setitem(vocab.TRAINER_SETTINGS, 'vocab_size', 512)
  assert vocab.embedded_model_key() != key


def test_t5_layout_and_sentinels():
  v = vocab.get_vocabulary()
  assert (v.pad_id, v.eos_id, v.unk_id) == (0, 1, 2)
  assert v.extra_ids == 100
  assert v.vocab_size == 1079  # the README's figure: 979 pieces + 100 sentinels
  pieces = v.tokenizer
  assert [pieces.id_to_piece(i) for i in range(3)] == ['<pad>', '</s>', '<unk>']
  assert v.decode([vocab.sentinel_id(v, 0)]) == '<extra_id_0>'
  assert v.decode([vocab.sentinel_id(v, 99)]) == '<extra_id_99>'
  assert vocab.sentinel_id(v, 0) == v.vocab_size - 1
  with pytest.raises(ValueError, match='out of range'):
    vocab.sentinel_id(v, 100)


def test_embedded_model_has_979_pieces_256_of_them_bytes(tmp_path):
  """The README's figures for the trained model itself (seqio adds the sentinels)."""
  model = sentencepiece.SentencePieceProcessor(model_file=str(vocab.train_embedded_model(tmp_path)))
  pieces = model.get_piece_size()
  assert pieces == 979
  assert sum(model.is_byte(i) for i in range(pieces)) == 256


def test_round_trip_including_unseen_characters():
  v = vocab.VOCABULARY
  for text in ['The capital of Kenya is Nairobi.', 'Zürich 1999: naïve café!']:
    ids = v.encode(text)
    assert v.unk_id not in ids  # byte fallback covers characters the corpus lacks
    assert v.decode(ids) == text


def test_lazy_vocabulary_follows_configure(tmp_path):
  model = vocab.train_embedded_model(tmp_path)
  copy = tmp_path / 'copy.model'
  copy.write_bytes(model.read_bytes())
  vocab.configure(str(copy))
  assert vocab.configured_path() == str(copy)
  assert vocab.VOCABULARY.resolved.sentencepiece_model_file == str(copy)
  assert vocab.VOCABULARY == vocab.get_vocabulary()
  assert isinstance(vocab.VOCABULARY, seqio.Vocabulary)
  vocab.configure(None)
  assert vocab.VOCABULARY.resolved.sentencepiece_model_file != str(copy)


def test_configure_rejects_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='does not exist'):
    vocab.configure(str(tmp_path / 'missing.model'))
