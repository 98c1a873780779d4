"""Build the vlmerge documentation site from the notebooks, offline and without Quarto.

    python tools/build_docs.py [--out _docs] [--only 00_core]

Each notebook in nbs/ (in file order, index first) is processed the way nbdev prepares notebooks
for Quarto (`show_doc` entries added after exported cells, hidden cells and directives removed),
executed top to bottom (cells flagged with settings.ini's `tst_flags`, e.g. slow or cuda, are
shown but not run), and written as one HTML page with a navigation sidebar. Exported source is
kept in a folded "source" block under its API entry. `nbdev_docs` still works where Quarto exists."""
import argparse, html, json, os, re, shutil, sys
import subprocess, tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'

CSS = """
:root { --side: 16rem; --fg: #1d2733; --muted: #5b6b7c; --line: #dde3ea; --accent: #2f6db5; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.55 system-ui, -apple-system, 'Segoe UI', sans-serif; color: var(--fg); }
nav#sidebar { position: fixed; top: 0; bottom: 0; left: 0; width: var(--side); overflow-y: auto;
  padding: 1.2rem 1rem; background: #f5f7fa; border-right: 1px solid var(--line); }
nav#sidebar .brand { font-weight: 700; font-size: 1.25rem; display: block; margin-bottom: 1rem; color: var(--fg); text-decoration: none; }
nav#sidebar ol { list-style: none; padding: 0; margin: 0; }
nav#sidebar li a { display: block; padding: .25rem .5rem; border-radius: 4px; color: var(--fg); text-decoration: none; font-size: .93rem; }
nav#sidebar li a:hover { background: #e8eef5; }
nav#sidebar li a.current { background: var(--accent); color: #fff; }
main { margin-left: var(--side); padding: 1.5rem 2.5rem 4rem; max-width: calc(var(--side) + 60rem); }
h1 { margin-top: .2rem; } .subtitle { color: var(--muted); font-size: 1.1rem; margin-top: -.6rem; }
a { color: var(--accent); }
pre { background: #f6f8fa; border: 1px solid var(--line); border-radius: 6px; padding: .7rem .9rem; overflow-x: auto; font-size: .86rem; }
pre.output { background: #fff; border-style: dashed; }
pre.error { background: #fff4f4; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }
th, td { border: 1px solid var(--line); padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f5f7fa; }
img { max-width: 100%; }
.apientry { border: 1px solid var(--line); border-left: 4px solid var(--accent); border-radius: 6px; padding: .2rem 1rem .6rem; margin: 1rem 0; }
.apientry h2, .apientry h3, .apientry h4 { margin: .6rem 0 .3rem; font-family: ui-monospace, monospace; font-size: 1.05rem; }
.math.display { display: block; text-align: center; margin: .6rem 0; }
details.source summary { cursor: pointer; color: var(--muted); font-size: .85rem; }
.pager { display: flex; justify-content: space-between; margin-top: 3rem; border-top: 1px solid var(--line); padding-top: 1rem; }
""" + "\n"


def cfg():
    "settings.ini's [DEFAULT] section."
    from configparser import ConfigParser
    c = ConfigParser(delimiters=['=']); c.read(ROOT/'settings.ini'); return c['DEFAULT']


def notebooks(only=None):
    "Notebooks in site order: index first, then by file name; folders with `_skip_docs` are left out."
    nbs = sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith('_'))
    nbs.sort(key=lambda p: (p.stem != 'index', p.name))
    return [p for p in nbs if not only or p.stem in only]


_re_code = re.compile(r'(```.*?```|~~~.*?~~~|`[^`\n]*`)', re.S)
_re_math = re.compile(r'\$\$(.+?)\$\$|(?<![\\$\w])\$(?![\s$])([^$\n]+?)(?<![\s\\])\$(?![\w$])', re.S)

def _protect_math(text):
    "Replace TeX (`$...$`, `$$...$$`) outside code with placeholders; return (text, [html of each formula])."
    found = []
    def sub(m):
        display = m.group(1) is not None
        tex = html.escape(m.group(1) if display else m.group(2))
        found.append(f'<span class="math display">\\[{tex}\\]</span>' if display else f'<span class="math inline">\\({tex}\\)</span>')
        return f'MATHPLACEHOLDER{len(found)-1}X'
    parts = _re_code.split(text)   # odd items are code: left untouched
    return ''.join(p if i % 2 else _re_math.sub(sub, p) for i, p in enumerate(parts)), found


def _md(text):
    "Markdown → HTML; TeX formulas become spans that MathJax (served from static/mathjax) typesets in the browser."
    from markdown_it import MarkdownIt
    text, maths = _protect_math(text)
    out = MarkdownIt('commonmark', {'html': True}).enable('table').render(text)
    return re.sub(r'MATHPLACEHOLDER(\d+)X', lambda m: maths[int(m.group(1))], out)


_re_progress = re.compile(r'\d+%\||\d+(\.\d+)?(it|s)/(s|it)\]|\|\s*\d+/\d+\s*\[')

def _strip_progress(txt):
    "Drop progress-bar lines (tqdm's `NN%|...| n/N [..it/s]`, including carriage-return redraws) from a stream's text."
    keep = [l.split('\r')[-1] for l in txt.split('\n')]
    return '\n'.join(l for l in keep if not _re_progress.search(l))


def mathjax_dir():
    "The offline MathJax 3 build (es5 folder) that `make install` installs from PyPI (django-static-mathjax)."
    try: import mathjax
    except ImportError: raise SystemExit("docs: MathJax is not installed; run `make install` (requirements.txt pins django-static-mathjax)")
    d = Path(mathjax.__file__).parent/'static'/'mathjax'/'es5'
    if not (d/'tex-svg.js').exists(): raise SystemExit(f"docs: {d}/tex-svg.js is missing; reinstall django-static-mathjax")
    return d


def _hl(code):
    from pygments import highlight
    from pygments.lexers import PythonLexer
    from pygments.formatters import HtmlFormatter
    return highlight(code, PythonLexer(), HtmlFormatter(nowrap=True))


def execute(path):
    "Process and run notebook `path`; return (title, subtitle, cells as dicts with outputs)."
    os.environ['IN_TEST'] = '1'
    import matplotlib; matplotlib.use('Agg')
    from execnb.nbio import read_nb
    from execnb.shell import CaptureShell
    from nbdev.process import NBProcessor
    from nbdev.frontmatter import FrontmatterProc
    from nbdev.processors import populate_language, add_show_docs, strip_ansi, hide_line, filter_stream_
    from fastcore.xtras import working_directory
    flags = set(cfg().get('tst_flags', '').split()) - {''}
    nb = read_nb(path)
    NBProcessor(path, procs=[FrontmatterProc, populate_language, add_show_docs], nb=nb, process=True)
    fm = getattr(nb, 'frontmatter_', {}) or {}
    sh = CaptureShell(path)
    sh.run_cell('from nbdev.showdoc import show_doc')

    def skip(cell):
        if cell.cell_type != 'code': return True
        d = getattr(cell, 'directives_', {}) or {}
        if 'nbdev_export(' in cell.source: return True
        if d.get('eval:', [''])[0].lower() == 'false': return True
        return bool(flags & d.keys())
    with working_directory(path.parent):
        sh.run_all(nb, exc_stop=True, preproc=skip)
    for p in (strip_ansi, hide_line, filter_stream_): NBProcessor(path, procs=[p], nb=nb, process=True)
    cells = []
    for c in nb.cells:
        d = getattr(c, 'directives_', {}) or {}
        cells.append({'type': c.cell_type, 'source': c.source, 'directives': sorted(d.keys()),
                      'show_doc': bool(getattr(c, 'has_sd', False)), 'outputs': [dict(o) for o in c.get('outputs', [])]})
    return fm.get('title', path.stem), fm.get('description', ''), cells


_re_srclink = re.compile(r'^\[source\]\([^)]*\)\{[^}]*\}\s*$', re.M)

def _clean_showdoc(md):
    "Drop Quarto-only bits of `show_doc` markdown: the leading rule and the GitHub source link (the site folds the source in)."
    md = _re_srclink.sub('', md)
    return re.sub(r'^\s*---\s*\n', '', md)


def _output_html(o):
    t = o.get('output_type')
    if t == 'stream':
        txt = _strip_progress(''.join(o.get('text', '')))
        return f'<pre class="output">{html.escape(txt)}</pre>' if txt.strip() else ''
    if t == 'error': return f'<pre class="output error">{html.escape(o.get("ename", "") + ": " + o.get("evalue", ""))}</pre>'
    data = o.get('data', {})
    if 'image/png' in data:
        src = ''.join(data['image/png']).replace('\n', '')
        return f'<figure><img alt="figure" src="data:image/png;base64,{src}"></figure>'
    if 'image/svg+xml' in data: return '<figure>' + ''.join(data['image/svg+xml']) + '</figure>'
    if 'text/html' in data: return ''.join(data['text/html'])
    if 'text/markdown' in data: return _md(_clean_showdoc(''.join(data['text/markdown'])))
    if 'text/plain' in data: return f'<pre class="output">{html.escape("".join(data["text/plain"]))}</pre>'
    return ''


def page_body(cells):
    "HTML for the processed cells of one notebook (title cell excluded)."
    out, pending_src = [], None
    hidden = {'hide', 'default_exp', 'exporti'}
    for c in cells:
        d = set(c['directives'])
        src = '\n'.join(l for l in c['source'].splitlines() if not l.lstrip().startswith('#|')).strip()
        if c['type'] == 'raw': continue          # Quarto front matter that nbdev's processor adds
        if c['type'] == 'markdown':
            out.append(_md(c['source'])); continue
        if c['show_doc']:
            body = ''.join(_output_html(o) for o in c['outputs'])
            fold = f'<details class="source"><summary>source</summary><pre><code>{_hl(pending_src)}</code></pre></details>' if pending_src else ''
            out.append(f'<div class="apientry">{body}{fold}</div>'); continue
        if d & hidden: continue
        if d & {'export', 'exports'}:
            pending_src = src; continue
        pending_src = None
        if src: out.append(f'<pre><code>{_hl(src)}</code></pre>')
        out.extend(_output_html(o) for o in c['outputs'])
    return '\n'.join(x for x in out if x)


def _title_cell(cells):
    "Drop the notebook's title cell (`# Title` + `> subtitle`), returning (title, subtitle, rest)."
    for i, c in enumerate(cells):
        if c['type'] == 'markdown' and c['source'].lstrip().startswith('# '):
            lines = c['source'].strip().splitlines()
            title = lines[0][2:].strip()
            sub = next((l[1:].strip() for l in lines[1:] if l.startswith('>')), '')
            rest = '\n'.join(l for l in lines[1:] if not l.startswith('>')).strip()
            cells = cells[:i] + ([dict(c, source=rest)] if rest else []) + cells[i+1:]
            return title, sub, cells
    return None, '', cells


MATHJAX = """<script>window.MathJax = {tex: {inlineMath: [['\\\\(', '\\\\)']], displayMath: [['\\\\[', '\\\\]']]},
  options: {processHtmlClass: 'math', ignoreHtmlClass: 'tex2jax_ignore'}, svg: {fontCache: 'global'}};</script>
<script defer src="static/mathjax/tex-svg.js"></script>"""


def render_page(name, title, sub, body, nav, prev, nxt, site):
    cur = ' class="current"'
    items = '\n'.join(f'<li><a href="{n}.html"{cur if n == name else ""}>{html.escape(t)}</a></li>' for n, t in nav)
    pager = '<div class="pager">' + (f'<a href="{prev[0]}.html">← {html.escape(prev[1])}</a>' if prev else '<span></span>') + \
            (f'<a href="{nxt[0]}.html">{html.escape(nxt[1])} →</a>' if nxt else '<span></span>') + '</div>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} – {html.escape(site)}</title><link rel="stylesheet" href="static/style.css"><link rel="stylesheet" href="static/pygments.css">{MATHJAX if 'class="math ' in body else ''}</head>
<body><nav id="sidebar"><a class="brand" href="index.html">{html.escape(site)}</a><ol>{items}</ol></nav>
<main><h1>{html.escape(title)}</h1>{f'<p class="subtitle">{html.escape(sub)}</p>' if sub else ''}
{body}
{pager}</main></body></html>
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=str(ROOT/'_docs'), help='output folder (replaced when the build succeeds)')
    ap.add_argument('--only', nargs='*', help='notebook stems to build (default all)')
    ap.add_argument('--workers', type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument('--execute', nargs=2, metavar=('NOTEBOOK', 'JSON'), help=argparse.SUPPRESS)  # one notebook, in its own process
    a = ap.parse_args(argv)
    if a.execute:
        Path(a.execute[1]).write_text(json.dumps(execute(Path(a.execute[0]))))
        return
    paths = notebooks(a.only)
    with tempfile.TemporaryDirectory() as td:
        def run_one(p):
            dest = Path(td)/f'{p.stem}.json'
            r = subprocess.run([sys.executable, __file__, '--execute', str(p), str(dest)], capture_output=True, text=True)
            if r.returncode: raise SystemExit(f"docs: executing {p.name} failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
            return json.loads(dest.read_text())
        with ThreadPoolExecutor(a.workers) as ex: results = list(ex.map(run_one, paths))
    pages = []
    for p, (fm_title, fm_sub, cells) in zip(paths, results):
        title, sub, cells = _title_cell(cells)
        pages.append((p.stem, title or fm_title, sub or fm_sub, cells))
    site = cfg().get('title', 'vlmerge')
    nav = [(n if n != 'index' else 'index', 'Overview' if n == 'index' else t) for n, t, _, _ in pages]
    out = Path(a.out); tmp = out.with_name(out.name + '.tmp')
    if tmp.exists(): shutil.rmtree(tmp)
    (tmp/'static').mkdir(parents=True)
    (tmp/'static'/'style.css').write_text(CSS)
    shutil.copytree(mathjax_dir(), tmp/'static'/'mathjax')     # served with the site: nothing is fetched at view time
    from pygments.formatters import HtmlFormatter
    (tmp/'static'/'pygments.css').write_text(HtmlFormatter().get_style_defs('pre code'))
    for i, (n, t, s, cells) in enumerate(pages):
        prev = nav[i-1] if i else None; nxt = nav[i+1] if i+1 < len(nav) else None
        (tmp/f'{n}.html').write_text(render_page(n, t, s, page_body(cells), nav, prev, nxt, site))
    (tmp/'pages.json').write_text(json.dumps([{'page': f'{n}.html', 'title': t} for n, t in nav], indent=1))
    if out.exists(): shutil.rmtree(out)
    os.replace(tmp, out)
    print(f"docs: {len(pages)} pages written to {out}/ (open {out}/index.html)")


if __name__ == '__main__': main()
