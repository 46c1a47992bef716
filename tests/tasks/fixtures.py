"""Small GLUE/SuperGLUE/SQuAD trees in the original distribution formats, for tests.

`write_fixtures(root)` writes CoLA without header or final newline, MRPC with a byte-order
mark, MultiRC nested, ReCoRD with @highlight passages, ...; `FIXTURE_COUNTS` is what each
dataset's validation fixture yields. The sources, benchmark and evaluate tests share them.
"""

from __future__ import annotations

import json
import os

BOM = '\ufeff'


def tsv(path: str, rows: list[list[str]], final_newline: bool = True) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  text = '\n'.join('\t'.join(row) for row in rows) + ('\n' if final_newline else '')
  with open(path, 'w', encoding='utf-8', newline='') as f:
    f.write(text)


def jsonl(path: str, rows: list[dict]) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.writelines(json.dumps(row) + '\n' for row in rows)


COLA = [['gj04', '1', '', 'The sailors rode the breeze clear of the rocks.'],
        ['gj04', '0', '*', 'The more we study verbs, the crazier they get get.'],
        ['cj99', '1', '', 'Bill whistled past the house.'],
        ['cj99', '0', '*', 'Them reading the book.']]
SST2 = [['sentence', 'label'], ["it 's a charming journey . ", '1'], ['unflinchingly bleak ', '0'],
        ['a gorgeous film ', '1'], ['dull and lifeless ', '0']]
MRPC = [[BOM + 'Quality', '#1 ID', '#2 ID', '#1 String', '#2 String'],
        ['1', '1', '2', 'He said the pie business fits.', 'The pie business fits, he said.'],
        ['0', '3', '4', 'Shares rose 5 percent.', 'The company hired a chef.'],
        ['1', '5', '6', 'It rained in Paris.', 'Paris had rain.'],
        ['1', '7', '8', 'The cat sat.', 'A cat was sitting.']]
QQP = [['id', 'qid1', 'qid2', 'question1', 'question2', 'is_duplicate'],
       ['1', '1', '2', 'How do I learn Python?', 'What is the best way to learn Python?', '1'],
       ['2', '3', '4', 'Why is the sky blue?', 'How tall is Everest?', '0'],
       ['3', '5', '6', 'How old is the moon?', 'What is the age of the moon?', '1'],
       ['4', '7', '8', 'Is tea healthy?', 'Can cats swim?', '0']]
STSB_HEADER = ['index', 'genre', 'filename', 'year', 'old_index', 'source1', 'source2',
               'sentence1', 'sentence2', 'score']
STSB = [STSB_HEADER] + [
  [str(i), 'main-captions', 'MSRvid', '2012test', '0001', 'none', 'none', s1, s2, score]
  for i, (s1, s2, score) in enumerate([
    ('A man with a hard hat is dancing.', 'A man wearing a hard hat is dancing.', '5.000'),
    ('A young child is riding a horse.', 'A child is riding a horse.', '4.750'),
    ('A man is slicing a tomato.', 'A man is playing a flute.', '0.500'),
    ('A woman is dancing.', 'A man is talking.', '0.700')])]
MNLI_HEADER = ['index', 'promptID', 'pairID', 'genre', 'sentence1_binary_parse',
               'sentence2_binary_parse', 'sentence1_parse', 'sentence2_parse', 'sentence1',
               'sentence2', 'label1', 'label2', 'label3', 'label4', 'label5', 'gold_label']


def _mnli(pairs: list[tuple[str, str, str]]) -> list[list[str]]:
  return [MNLI_HEADER] + [[str(i), '1', f'{i}e', 'fiction', '( p )', '( h )', '(ROOT p)',
                           '(ROOT h)', p, h, g, g, g, g, g, g] for i, (p, h, g) in enumerate(pairs)]


QNLI = [['index', 'question', 'sentence', 'label'],
        ['0', 'What came into force?', 'The new constitution came into force.', 'entailment'],
        ['1', 'Who wrote it?', 'The weather was fine.', 'not_entailment'],
        ['2', 'Where is Paris?', 'Paris is in France.', 'entailment'],
        ['3', 'When did it end?', 'Cats are mammals.', 'not_entailment']]
RTE = [['index', 'sentence1', 'sentence2', 'label'],
       ['0', 'Dana Reeve has died of lung cancer.', 'Christopher Reeve had an accident.',
        'not_entailment'],
       ['1', 'Bacteria mutate faster than new antibiotics.', 'Bacteria is winning.',
        'entailment'],
       ['2', 'Cairo is home to 15 million people.', 'Cairo is large.', 'entailment'],
       ['3', 'The sun is a star.', 'The sun is a planet.', 'not_entailment']]

RECORD_PASSAGE = ('The Oakland Raiders beat the Denver Broncos in Denver.\n@highlight\n'
                  'Raiders win in Denver\n@highlight\nBroncos lose at home!\n@highlight\n'
                  'Carr shines')


def _record_row(idx: int, query_answers: list[tuple[str, list[str]]]) -> dict:
  def span(name: str) -> dict:
    start = RECORD_PASSAGE.index(name)
    return {'start': start, 'end': start + len(name) - 1}

  entities = [span(n) for n in ('Oakland Raiders', 'Denver Broncos', 'Denver', 'Carr')]
  qas = [{'query': q, 'answers': [dict(span(a), text=a) for a in answers], 'idx': 10 * idx + k}
         for k, (q, answers) in enumerate(query_answers)]
  return {'source': 'Daily mail', 'passage': {'text': RECORD_PASSAGE, 'entities': entities},
          'qas': qas, 'idx': idx}


def _multirc_row(idx: int, text: str, questions: list[tuple[int, str, list[tuple[str, int]]]]
                 ) -> dict:
  qs = [{'question': q, 'idx': qidx,
         'answers': [{'text': a, 'idx': 100 * qidx + k, 'label': label}
                     for k, (a, label) in enumerate(answers)]} for qidx, q, answers in questions]
  return {'idx': idx, 'version': 1.1, 'passage': {'text': text, 'questions': qs}}


def _wsc_row(idx: int, text: str, span1: tuple[int, str], span2: tuple[int, str], label: bool
             ) -> dict:
  return {'text': text, 'target': {'span1_index': span1[0], 'span1_text': span1[1],
                                   'span2_index': span2[0], 'span2_text': span2[1]},
          'idx': idx, 'label': label}


def _squad(qas: list[tuple[str, str, list[tuple[str, int]]]]) -> dict:
  context = 'Super Bowl 50 was played at Levi\'s Stadium in Santa Clara, California.'
  return {'version': '1.1', 'data': [{'title': 'Super_Bowl_50', 'paragraphs': [{
    'context': context,
    'qas': [{'id': qid, 'question': q, 'answers': [{'text': t, 'answer_start': s}
                                                   for t, s in answers]}
            for qid, q, answers in qas]}]}]}


def write_fixtures(root: str) -> str:
  """Writes the fixture tree under `root` (glue/, super_glue/, squad/) and returns root."""
  glue = os.path.join(root, 'glue')
  for split in ('train', 'dev'):
    tsv(f'{glue}/CoLA/{split}.tsv', COLA, final_newline=False)
    tsv(f'{glue}/SST-2/{split}.tsv', SST2)
    tsv(f'{glue}/MRPC/{split}.tsv', MRPC)
    tsv(f'{glue}/QQP/{split}.tsv', QQP)
    tsv(f'{glue}/STS-B/{split}.tsv', STSB)
    tsv(f'{glue}/QNLI/{split}.tsv', QNLI)
    tsv(f'{glue}/RTE/{split}.tsv', RTE)
  mnli = [('The cat sat on the mat.', 'A cat sat.', 'entailment'),
          ('He went home.', 'He stayed at work.', 'contradiction'),
          ('She bought a car.', 'The car was red.', 'neutral'),
          ('It is raining.', 'The ground is wet.', 'entailment')]
  tsv(f'{glue}/MNLI/train.tsv', _mnli(mnli))
  tsv(f'{glue}/MNLI/dev_matched.tsv', _mnli(mnli))
  tsv(f'{glue}/MNLI/dev_mismatched.tsv', _mnli(mnli[1:]))

  sg = os.path.join(root, 'super_glue')
  boolq = [{'question': 'is the sky blue', 'passage': 'Sky -- The sky is blue.', 'idx': 1,
            'label': True},
           {'question': 'is ice hot', 'passage': 'Ice -- Ice is cold.', 'idx': 0, 'label': False},
           {'question': 'do cats bark', 'passage': 'Cat -- Cats meow.', 'idx': 2, 'label': False}]
  cb = [{'premise': 'Valence the void-brain. Did he think he was helping?',
         'hypothesis': 'Valence was helping', 'label': 'contradiction', 'idx': 0},
        {'premise': 'Do we assume there is a shipment?', 'hypothesis': 'there is a shipment',
         'label': 'neutral', 'idx': 1},
        {'premise': 'I knew that she had left.', 'hypothesis': 'she had left',
         'label': 'entailment', 'idx': 2},
        {'premise': 'He said it was late.', 'hypothesis': 'it was late', 'label': 'entailment',
         'idx': 3}]
  copa = [{'premise': 'The man turned on the faucet.', 'choice1': 'The toilet filled.',
           'choice2': 'Water flowed from the spout.', 'question': 'effect', 'label': 1, 'idx': 0},
          {'premise': 'The woman retired.', 'choice1': 'She received her pension.',
           'choice2': 'She paid off her mortgage.', 'question': 'effect', 'label': 0, 'idx': 1},
          {'premise': 'I was hungry.', 'choice1': 'I ate.', 'choice2': 'I slept.',
           'question': 'cause', 'label': 0, 'idx': 2}]
  multirc = [
    _multirc_row(0, '<b>Sent 1: </b>Forces change motion.<br><b>Sent 2: </b>Mass matters.<br>',
                 [(0, 'What changes motion?', [('Forces', 1), ('Colour', 0), ('A force', 1)]),
                  (1, 'Does mass matter?', [('Yes', 1), ('No', 0)])]),
    # question idx 0 again, in another paragraph: grouping is by (paragraph, question).
    _multirc_row(1, 'Tom had a dog. The dog was brown.',
                 [(0, 'What colour was the dog?', [('Brown', 1), ('Black', 0)])])]
  record = [_record_row(0, [('@placeholder lost to the Raiders.', ['Denver Broncos']),
                            ('The game was in @placeholder.', ['Denver'])]),
            _record_row(1, [('@placeholder played well.', ['Carr', 'Oakland Raiders'])])]
  rte = [{'premise': 'Dana Reeve has died.', 'hypothesis': 'Christopher Reeve had an accident.',
          'label': 'not_entailment', 'idx': 0},
         {'premise': 'Bacteria mutate fast.', 'hypothesis': 'Bacteria is winning.',
          'label': 'entailment', 'idx': 1},
         {'premise': 'Cairo is big.', 'hypothesis': 'Cairo is large.', 'label': 'entailment',
          'idx': 2}]
  wic = [{'word': 'class', 'sentence1': 'An emerging professional class.',
          'sentence2': 'He showed real class.', 'idx': 0, 'label': False, 'start1': 25,
          'start2': 17, 'end1': 30, 'end2': 22, 'version': 1.1},
         {'word': 'bank', 'sentence1': 'He sat on the bank.', 'sentence2': 'The river bank.',
          'idx': 1, 'label': True, 'start1': 14, 'start2': 10, 'end1': 18, 'end2': 14,
          'version': 1.1}]
  wsc = [
    _wsc_row(0, 'Mark told Pete many lies about himself , which Pete included in his book .',
             (0, 'Mark'), (12, 'his'), False),
    _wsc_row(1, 'The city councilmen refused the demonstrators a permit because they feared '
                'violence .', (0, 'The city councilmen'), (9, 'they'), True),
    # span1 text differs in case from the text: wsc.fixed lowercases it.
    _wsc_row(2, 'I put the cake away in the refrigerator . It has a lot of leftovers in it .',
             (6, 'The refrigerator'), (16, 'it'), True)]
  for split in ('train', 'val'):
    jsonl(f'{sg}/BoolQ/{split}.jsonl', boolq)
    jsonl(f'{sg}/CB/{split}.jsonl', cb)
    jsonl(f'{sg}/COPA/{split}.jsonl', copa)
    jsonl(f'{sg}/MultiRC/{split}.jsonl', multirc)
    jsonl(f'{sg}/ReCoRD/{split}.jsonl', record)
    jsonl(f'{sg}/RTE/{split}.jsonl', rte)
    jsonl(f'{sg}/WiC/{split}.jsonl', wic)
    jsonl(f'{sg}/WSC/{split}.jsonl', wsc)

  squad = _squad([('b2', 'Where was Super Bowl 50 played?', [("Levi's Stadium", 28)] * 2),
                  ('a1', 'Which state?', [('California', 61), ('Santa Clara, California', 48)]),
                  ('c3', 'Which Super Bowl?', [('Super Bowl 50', 0), ('50', 11)])])
  os.makedirs(os.path.join(root, 'squad'), exist_ok=True)
  for name in ('train-v1.1.json', 'dev-v1.1.json'):
    with open(os.path.join(root, 'squad', name), 'w', encoding='utf-8') as f:
      json.dump(squad, f)
  return root


# Validation examples each dataset's fixture yields.
FIXTURE_COUNTS = {
  'glue/cola': 4, 'glue/sst2': 4, 'glue/mrpc': 4, 'glue/qqp': 4, 'glue/stsb': 4, 'glue/qnli': 4,
  'glue/rte': 4, 'super_glue/boolq': 3, 'super_glue/cb': 4, 'super_glue/copa': 3,
  'super_glue/multirc': 7, 'super_glue/record': 3, 'super_glue/rte': 3, 'super_glue/wic': 2,
  'super_glue/wsc.fixed': 3, 'squad/v1.1': 3,
}
