"""The report as a list of blocks (headings, paragraphs, tables, plots), rendered to Markdown,
CSV and one self-contained HTML page (inline CSS, plots as data: URIs, no external asset).

Text may mark code with `backticks`; everything else is plain text and is escaped for HTML.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import io
import math
import re
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Heading:
  level: int
  text: str


@dataclasses.dataclass(frozen=True)
class Paragraph:
  text: str


@dataclasses.dataclass(frozen=True)
class Bullets:
  items: tuple[str, ...]


@dataclasses.dataclass
class Table:
  """A table with raw values (for CSV) and their display text (Markdown, HTML)."""

  slug: str  # file name stem of its CSV
  title: str
  columns: list[str]
  raw: list[list[Any]] = dataclasses.field(default_factory=list)
  text: list[list[str]] = dataclasses.field(default_factory=list)
  notes: list[str] = dataclasses.field(default_factory=list)

  def add(self, cells: Sequence[tuple[Any, str]]) -> None:
    """Appends a row of (raw value, display text) cells."""
    if len(cells) != len(self.columns):
      raise ValueError(f'table {self.slug}: a row of {len(cells)} cells for '
                       f'{len(self.columns)} columns.')
    self.raw.append([c[0] for c in cells])
    self.text.append([c[1] for c in cells])

  def csv(self) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(self.columns)
    for row in self.raw:
      writer.writerow([_csv_value(v) for v in row])
    return out.getvalue()


@dataclasses.dataclass(frozen=True)
class Plot:
  slug: str  # file name stem of its PNG
  title: str
  caption: str
  filename: str  # the PNG's file name, next to report.md


Block = Heading | Paragraph | Bullets | Table | Plot


def _csv_value(value: Any) -> str:
  if value is None:
    return ''
  if isinstance(value, bool):
    return 'true' if value else 'false'
  if isinstance(value, float):
    return repr(value) if math.isfinite(value) else ''
  return str(value)


# Number formats: every table shows its numbers with these.

def count(value: float | None) -> str:
  """12.3M, 1.20B, 950k: parameter counts."""
  if value is None:
    return '–'
  for size, suffix in ((1e12, 'T'), (1e9, 'B'), (1e6, 'M'), (1e3, 'k')):
    if abs(value) >= size:
      return f'{value / size:.3g}{suffix}'
  return f'{value:.0f}'


def flops(value: float | None) -> str:
  """3.57 GFLOP style, with SI prefixes."""
  if value is None:
    return '–'
  for size, prefix in ((1e15, 'P'), (1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
    if abs(value) >= size:
      return f'{value / size:.3g}{prefix}'
  return f'{value:.3g}'


def number(value: float | None, signed: bool = False) -> str:
  """A metric value: 2 decimals from 1 up, 3 significant below, 1 decimal from 1000."""
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return '–'
  sign = '+' if signed else ''
  magnitude = abs(value)
  if magnitude >= 1000:
    return f'{value:{sign},.1f}'
  if magnitude >= 1 or value == 0:
    return f'{value:{sign}.2f}'
  return f'{value:{sign}.3g}'


def flag(value: bool | None) -> str:
  return '–' if value is None else ('yes' if value else 'no')


def scale(value: float | None) -> str:
  return '–' if value is None else f'x{value:g}'


# Markdown.

def _md_cell(text: str) -> str:
  return text.replace('|', '\\|').replace('\n', ' ')


def markdown(blocks: Sequence[Block]) -> str:
  """The blocks as GitHub-flavoured Markdown; plots link their PNG by file name."""
  out: list[str] = []
  for block in blocks:
    if isinstance(block, Heading):
      out += ['#' * block.level + ' ' + block.text, '']
    elif isinstance(block, Paragraph):
      out += [block.text, '']
    elif isinstance(block, Bullets):
      out += [f'- {item}' for item in block.items] + ['']
    elif isinstance(block, Table):
      out += [f'**{block.title}** (`report_{block.slug}.csv`)', '']
      out.append('| ' + ' | '.join(_md_cell(c) for c in block.columns) + ' |')
      out.append('|' + '|'.join('---' for _ in block.columns) + '|')
      out += ['| ' + ' | '.join(_md_cell(c) for c in row) + ' |' for row in block.text]
      out.append('')
      if not block.text:
        out += ['(no rows)', '']
      out += [f'- {note}' for note in block.notes] + ([''] if block.notes else [])
    elif isinstance(block, Plot):
      out += [f'![{block.title}]({block.filename})', '', f'*{block.caption}*', '']
  return '\n'.join(out).rstrip('\n') + '\n'


# HTML.

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1400px;padding:0 1.5em;color:#1f2328;line-height:1.45}
h1{border-bottom:2px solid #d0d7de;padding-bottom:.3em}
h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:2em}
.table-wrap{overflow-x:auto;margin:.6em 0}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f6f8fa;position:sticky;top:0}
td.t,th.t{text-align:left}
tr:nth-child(even) td{background:#fbfcfd}
td.yes{color:#1a7f37;font-weight:600} td.no{color:#8c959f}
ul.notes{font-size:12.5px;color:#57606a;margin-top:.2em}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #d0d7de}
figcaption{font-size:13px;color:#57606a}
code{background:#f6f8fa;padding:0 .25em;border-radius:3px;font-size:92%}
"""

_CODE = re.compile(r'`([^`]+)`')
_STRONG = re.compile(r'\*\*([^*]+)\*\*')


def _inline(text: str) -> str:
  """Escaped text with `code` and **strong** marks, the two that the report's Markdown uses."""
  text = _CODE.sub(lambda m: f'<code>{m.group(1)}</code>', html.escape(text, quote=False))
  return _STRONG.sub(lambda m: f'<strong>{m.group(1)}</strong>', text)


def _numeric(text: str) -> bool:
  return bool(re.fullmatch(r'[+\-–]?[\d.,]+[kMGTPB%]?|–', text))


def page(blocks: Sequence[Block], images: dict[str, bytes], title: str) -> str:
  """One self-contained HTML page: inline CSS, each plot's PNG (`images[plot.filename]`)
  embedded as a base64 data: URI."""
  out = ['<!DOCTYPE html>', '<html lang="en">', '<head>', '<meta charset="utf-8">',
         f'<title>{html.escape(title)}</title>', f'<style>{_CSS}</style>', '</head>', '<body>']
  for block in blocks:
    if isinstance(block, Heading):
      out.append(f'<h{block.level}>{_inline(block.text)}</h{block.level}>')
    elif isinstance(block, Paragraph):
      out.append(f'<p>{_inline(block.text)}</p>')
    elif isinstance(block, Bullets):
      out.append('<ul>' + ''.join(f'<li>{_inline(i)}</li>' for i in block.items) + '</ul>')
    elif isinstance(block, Table):
      out.append(_table(block))
    elif isinstance(block, Plot):
      data = base64.b64encode(images[block.filename]).decode('ascii')
      out.append(f'<figure id="{html.escape(block.slug)}"><img alt="{html.escape(block.title)}" '
                 f'src="data:image/png;base64,{data}"><figcaption>{_inline(block.caption)}'
                 '</figcaption></figure>')
  out += ['</body>', '</html>', '']
  return '\n'.join(out)


def _table(table: Table) -> str:
  parts = [f'<div class="table-wrap"><table id="{html.escape(table.slug)}">',
           f'<caption>{_inline(table.title)}</caption>', '<thead><tr>']
  numeric = [all(_numeric(row[i]) for row in table.text) if table.text else False
             for i in range(len(table.columns))]
  parts += [f'<th class="{"" if numeric[i] else "t"}">{_inline(c)}</th>'
            for i, c in enumerate(table.columns)]
  parts.append('</tr></thead><tbody>')
  for row in table.text:
    cells = []
    for i, text in enumerate(row):
      kind = [] if numeric[i] else ['t']
      if text in ('yes', 'no'):
        kind.append(text)
      cells.append(f'<td class="{" ".join(kind)}">{_inline(text)}</td>')
    parts.append('<tr>' + ''.join(cells) + '</tr>')
  parts.append('</tbody></table></div>')
  if table.notes:
    parts.append('<ul class="notes">' + ''.join(f'<li>{_inline(n)}</li>' for n in table.notes)
                 + '</ul>')
  return '\n'.join(parts)
