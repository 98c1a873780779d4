"""Write README.md from nbs/index.ipynb (Quarto-free stand-in for `nbdev_readme`).

Markdown cells are copied; code cells become ```python blocks; cells marked `#| hide` are left out."""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = '<!-- Generated from nbs/index.ipynb by tools/readme.py (`make export`): edit the notebook, not this file. -->\n\n'


def render(nb:dict) -> str:
    "The README text for notebook `nb`."
    parts = []
    for c in nb['cells']:
        src = ''.join(c['source']).strip()
        if not src: continue
        lines = src.splitlines()
        directives = [l for l in lines if l.startswith('#|')]
        if any(d.replace(' ', '') in ('#|hide', '#|exec_doc', '#|default_exp') for d in directives): continue
        body = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
        parts.append(body if c['cell_type'] == 'markdown' else f'```python\n{body}\n```')
    return HEADER + '\n\n'.join(parts) + '\n'


def main():
    nb = json.loads((ROOT/'nbs'/'index.ipynb').read_text())
    text = render(nb)
    out = Path('README.md')
    if not out.exists() or out.read_text() != text: out.write_text(text)


if __name__ == '__main__': main()
