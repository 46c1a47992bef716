"""Text-evaluation numbers recorded before the evaluators moved into the core (issue 10).

Recorded at commit 65558d4 with the code of that commit: `text.evaluation.predict` and
`evaluate_task` (greedy decoding under a plain `jax.jit` on one device) and `upstream_metrics`
(teacher-forced sums from `T5Model.eval_metrics`), for the model and settings of
tests/text/test_evaluation.py::test_text_evaluation_keeps_its_numbers: a 2+2-layer T5 (d_model
32, d_ff 64, 2x16 heads, the embedded vocabulary), initialised with seed 7 and its params
multiplied by 4 (sharper logits, so that predictions differ between examples), on the first
50 validation examples of embedded_squad_v1, batch 16 (a ragged last batch of 2), inputs
trimmed to 64 tokens, 12 decode steps; upstream at lengths 64/16. Data, not code: do not
regenerate it with the current code.
"""

GOLDEN = {'embedded_squad_v1': {'metrics': {'em': 0.0, 'f1': 0.0},
                       'predictions': ['<ara2X 54. 54. 54. 54. 54. 54. 54. 54.',
                                       'rom� ba ba ba ba ba ba ba ba ba ba',
                                       'irasp 20. Car Car Car Car Car Car Car Car Car',
                                       '<extra_id_39> <extra_id_39> <extra_id_39> <extra_id_39> '
                                       '<extra_id_39> <extra_id_39> <extra_id_39> <extra_id_39> '
                                       '<extra_id_39> <extra_id_39> <extra_id_39> <extra_id_39>',
                                       '222222222222',
                                       '�pt!� Kampalaira Brazil�����',
                                       '�2�pt 19.2cean2$2$2',
                                       'plants2X2X2X2X2X2',
                                       '((((((((((((',
                                       'ox <extra_id_19>�ring\\kkkkkkk',
                                       'ira lifeless\x14 bland bland bland bland bland bland bland '
                                       'bland bland',
                                       'Brazil\x0c'
                                       ' Santiago H 19."2 Brazil <extra_id_12>2 Brazil '
                                       '<extra_id_12>',
                                       'ia Santiago Amsterdamia Amsterdamia Amsterdamia '
                                       'Amsterdamia Amsterdamia',
                                       '19. 19. 19. 19. 19. 19. 19. 19. 19. 19. 19. 19.',
                                       'Brazil H2pt Brazilc�cean2���',
                                       '�ira Greece lifeless messyrom blandsp�J <extra_id_8> '
                                       'Austria',
                                       'Brazil Madrid <extra_id_51> H <extra_id_51> <extra_id_50> '
                                       'iguana Madrid <extra_id_51>X <extra_id_54> bat',
                                       'pt <extra_id_57> <extra_id_57> <extra_id_57> <extra_id_57> '
                                       '<extra_id_57> <extra_id_57> <extra_id_57> <extra_id_57> '
                                       '<extra_id_57> <extra_id_57> <extra_id_57>',
                                       'ia Madrid Po <extra_id_39>\x13��rom mealn dol Ma',
                                       '< <extra_id_57>int Samoa <extra_id_50>k Swedish '
                                       '<extra_id_50> <extra_id_57> <extra_id_57> <extra_id_57> '
                                       '<extra_id_57>',
                                       'sp Italian$$$$$$$$$$',
                                       'Brazil Brazil Brazil Brazil Brazil Brazil Brazil Brazil '
                                       'Brazil Brazil Brazil Brazil',
                                       'Santiagoly lifeless lifeless lifeless lifeless lifeless '
                                       'lifeless lifeless lifeless lifeless lifeless',
                                       '� small superbptvievievievievievievievie',
                                       '<extra_id_39> <extra_id_39> <extra_id_39> <extra_id_39> '
                                       '<extra_id_39> <extra_id_39> <extra_id_39> <extra_id_39> '
                                       '<extra_id_39> <extra_id_39> <extra_id_39> <extra_id_39>',
                                       '�pt <extra_id_57>pt Santiagovie <extra_id_57>� '
                                       '<extra_id_39> <extra_id_57>$�',
                                       '\x0c lifeless 20.k2ia2ia2ia2ia',
                                       '������������',
                                       'ia�����������',
                                       'pt�sp�theanykly Car\x0ck�',
                                       'Brazil22222222222',
                                       'ira Apia <extra_id_57>ptring Korea�ur�ur�ur',
                                       '< <extra_id_57> 19.\x14 lifeless Asia� ri Greece Paris '
                                       '<extra_id_7> flawless',
                                       'pt lifeless 54. <extra_id_7> <extra_id_7> <extra_id_7> '
                                       '<extra_id_7> <extra_id_7> <extra_id_7> <extra_id_7> '
                                       '<extra_id_7> <extra_id_7>',
                                       '222222222222',
                                       '<ly <extra_id_85> 20. 19.Yuteuan� a Beijing',
                                       '222222222222',
                                       'Greece ri 54.rom lifeless 54. BuZrom heartwarmingXcean',
                                       '222222222222',
                                       'Brazilsp <extra_id_64>Xnna� satisfying satisfying '
                                       'satisfying satisfying satisfying satisfying',
                                       '30.\x18 H H H H H H H H H H',
                                       'Santiago H 19.� H 19.$ gold\\\x1f gold lifeless',
                                       'Santiago gold gold gold gold gold gold gold gold gold gold '
                                       'gold',
                                       'Santiagogo lifelessX$pt2 <extra_id_50>ile FilipinoX<',
                                       'ox� gask <extra_id_19>QQQQQQQ',
                                       'Madrid <extra_id_54> Filipino� Filipino� Filipino� '
                                       'Filipino� Filipino�',
                                       '19.\r 19.\x1f 19.\x1f 19.\x1f 19.\x1f 19.\x1f',
                                       'Brazilsp����������',
                                       '19.2ira$ <extra_id_54> Beijing 54.`cean iguanan�',
                                       'ia 19.2 <extra_id_54> <extra_id_2>vieodi Beijing 19. '
                                       'Paris�ly'],
                       'upstream': {'accuracy': 0.0,
                                    'loss': 49.70695175359278,
                                    'neg_log_perplexity': -49.429581253616895,
                                    'perplexity': 2.930853691400078e+21}}}
