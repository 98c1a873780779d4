"""Write a notebook from percent-format text (an authoring aid; the notebook is the source afterwards).

    python tools/nbwrite.py draft.py nbs/00_core.ipynb

Cells are separated by lines `# %%` (code) or `# %% [markdown]` (markdown; each line's leading
`# ` is removed)."""
import hashlib, json, re, sys
from pathlib import Path


def cells_from_text(text):
    "Split percent-format `text` into notebook cells."
    cells, kind, buf = [], None, []
    def flush():
        if kind is None: return
        lines = list(buf)
        while lines and not lines[-1].strip(): lines.pop()
        while lines and not lines[0].strip(): lines.pop(0)
        if kind == 'markdown': lines = [re.sub(r'^# ?', '', l) for l in lines]
        src = [l + '\n' for l in lines]
        if src: src[-1] = src[-1][:-1]
        cid = hashlib.sha1(f'{len(cells)}:{kind}:{"".join(src)}'.encode()).hexdigest()[:8]  # stable ids: no churn on re-conversion
        cell = {'cell_type': kind, 'id': cid, 'metadata': {}, 'source': src}
        if kind == 'code': cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    for line in text.splitlines():
        m = re.match(r'^# %%( \[markdown\])?\s*$', line)
        if m:
            flush(); kind, buf = ('markdown' if m.group(1) else 'code'), []
        else: buf.append(line)
    flush()
    return cells


def main(src, dest):
    nb = {'cells': cells_from_text(Path(src).read_text()),
          'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}},
          'nbformat': 4, 'nbformat_minor': 5}
    Path(dest).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')


if __name__ == '__main__': main(*sys.argv[1:3])
