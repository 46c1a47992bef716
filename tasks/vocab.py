"""The text vocabulary: T5's SentencePiece model when configured, else one trained on the corpus.

T5 layout either way: pad 0, eos 1, unk 2, and 100 sentinels at the end of the vocabulary
(sentinel i is `vocab_size - 1 - i`). The embedded model is trained on first use with fixed
settings and one thread (identical bytes on every run) and cached under
`$SHAPEBENCH_CACHE` (default `~/.cache/shapebench`) in a file named after a hash of the corpus,
the settings and the sentencepiece version. Tasks hold a `LazyVocabulary`, which resolves the
configured vocabulary at use, so importing tasks trains nothing and `configure()` called before
building a dataset takes effect.
"""

import functools
import hashlib
import io
import json
import os
import pathlib
import tempfile
from collections.abc import Sequence

import sentencepiece as spm
import seqio

from tasks.embedded import corpus

EXTRA_IDS = 100
CACHE_ENV = 'SHAPEBENCH_CACHE'
# Upper bound on the trained model's pieces (pad/eos/unk and 256 byte-fallback pieces included);
# the corpus has about a thousand distinct words, so it yields 979, plus 100 sentinels = 1079.
EMBEDDED_PIECES = 1024
TRAINER_SETTINGS = {
  'model_type': 'unigram',
  'vocab_size': EMBEDDED_PIECES,
  'pad_id': 0,
  'eos_id': 1,
  'unk_id': 2,
  'bos_id': -1,
  'character_coverage': 1.0,
  'num_threads': 1,
  'input_sentence_size': 0,
  'shuffle_input_sentence': False,
  'max_sentence_length': 8192,
  'hard_vocab_limit': False,
  'byte_fallback': True,
  'minloglevel': 2,
}

_configured_path: str | None = None


def configure(path: str | None) -> None:
  """Uses the SentencePiece model at `path` (e.g. T5's) from now on; None restores the default."""
  global _configured_path
  if path is not None and not os.path.isfile(path):
    raise FileNotFoundError(
      f'vocabulary file {path!r} does not exist; pass the path of a SentencePiece .model file '
      "(T5's is gs://t5-data/vocabs/cc_all.32000/sentencepiece.model) or omit --vocab to use "
      'the embedded vocabulary'
    )
  _configured_path = path


def configured_path() -> str | None:
  """The model path given to `configure`, or None for the embedded default."""
  return _configured_path


def cache_dir() -> pathlib.Path:
  """Where trained vocabularies are cached: $SHAPEBENCH_CACHE or ~/.cache/shapebench."""
  return pathlib.Path(os.environ.get(CACHE_ENV) or pathlib.Path.home() / '.cache' / 'shapebench')


def embedded_model_key() -> str:
  """Hash of everything the embedded model's bytes depend on: corpus, settings, library version."""
  digest = hashlib.sha256(corpus.text_bytes('train'))
  digest.update(json.dumps(TRAINER_SETTINGS, sort_keys=True).encode())
  digest.update(spm.__version__.encode())
  return digest.hexdigest()[:16]


def train_embedded_model(directory: str | os.PathLike | None = None) -> pathlib.Path:
  """Path of the embedded SentencePiece model under `directory` (default `cache_dir()`).

  Trains it if absent, writing to a temporary file and renaming it into place, so that readers
  never see a partial model and concurrent trainers agree (they write identical bytes).
  """
  directory = pathlib.Path(directory) if directory is not None else cache_dir()
  path = directory / f'embedded-{EMBEDDED_PIECES}-{embedded_model_key()}.model'
  if path.exists():
    return path
  directory.mkdir(parents=True, exist_ok=True)
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
    sentence_iterator=iter(corpus.documents('train')), model_writer=model, **TRAINER_SETTINGS
  )
  with tempfile.NamedTemporaryFile(dir=directory, suffix='.tmp', delete=False) as f:
    f.write(model.getvalue())
  os.chmod(f.name, 0o644)  # a shared cache: readable by all, like any other cached file
  os.replace(f.name, path)
  return path


@functools.cache
def _vocabulary_at(path: str) -> seqio.SentencePieceVocabulary:
  return seqio.SentencePieceVocabulary(path, extra_ids=EXTRA_IDS)


def get_vocabulary() -> seqio.SentencePieceVocabulary:
  """The configured vocabulary (T5 model given to `configure`, else the embedded one)."""
  return _vocabulary_at(_configured_path or str(train_embedded_model()))


class LazyVocabulary(seqio.Vocabulary):
  """A `seqio.Vocabulary` that delegates every call to `get_vocabulary()` at the time of use."""

  def __init__(self):
    super().__init__(extra_ids=EXTRA_IDS)

  @property
  def resolved(self) -> seqio.SentencePieceVocabulary:
    return get_vocabulary()

  @property
  def eos_id(self) -> int | None:
    return self.resolved.eos_id

  @property
  def unk_id(self) -> int | None:
    return self.resolved.unk_id

  @property
  def pad_id(self) -> int:
    return self.resolved.pad_id

  @property
  def vocab_size(self) -> int:
    return self.resolved.vocab_size

  @property
  def _base_vocab_size(self) -> int:
    return self.resolved._base_vocab_size

  def _encode(self, s: str) -> Sequence[int]:
    return self.resolved.encode(s)

  def _decode(self, ids):
    return self.resolved.decode(ids)

  def decode(self, ids):
    return self.resolved.decode(ids)

  def _encode_tf(self, s):
    return self.resolved.encode_tf(s)

  def _decode_tf(self, ids):
    return self.resolved.decode_tf(ids)

  def decode_tf(self, ids):
    return self.resolved.decode_tf(ids)

  def __eq__(self, other) -> bool:
    if isinstance(other, LazyVocabulary):
      return True
    # Another lazy wrapper (exposing `.vocabulary`) or a concrete vocabulary: compare resolved.
    return self.resolved == getattr(other, 'vocabulary', other)

  def __hash__(self) -> int:
    return hash(LazyVocabulary)

  def __str__(self) -> str:
    return f'LazyVocabulary(configured_path={_configured_path!r})'


VOCABULARY = LazyVocabulary()
# The text-to-text features every text task shares: inputs and targets in the project
# vocabulary, EOS appended. One definition, so that mixtures across task families agree.
OUTPUT_FEATURES = {
  'inputs': seqio.Feature(VOCABULARY, add_eos=True),
  'targets': seqio.Feature(VOCABULARY, add_eos=True),
}


def sentinel_id(vocabulary: seqio.Vocabulary, i: int) -> int:
  """Id of sentinel `<extra_id_i>` (T5 counts them down from the end of the vocabulary)."""
  if not 0 <= i < vocabulary.extra_ids:
    raise ValueError(f'sentinel {i} out of range; the vocabulary has {vocabulary.extra_ids}')
  return vocabulary.vocab_size - 1 - i
