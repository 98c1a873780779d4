"End to end: `vlmerge distance` on synthetic checkpoints written to disk (metrics, issue 7)."
import csv, json, subprocess, sys
from pathlib import Path
import pytest, torch
from vlmerge.core import save_sd, save_sharded
from vlmerge.metrics.distance import synthetic_experts

PY = [sys.executable, '-c', 'import sys; from vlmerge.cli import main; sys.exit(main())']

def _run(*args):
    "`vlmerge distance ARGS` in a fresh process: (returncode, stdout, stderr)."
    r = subprocess.run(PY + ['distance', *map(str, args)], capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr

def _main(capsys, *args):
    "`vlmerge distance ARGS` in this process (faster): (returncode, stdout, stderr)."
    from vlmerge.cli import main
    rc = main(['distance', *map(str, args)]); c = capsys.readouterr()
    return rc, c.out, c.err

@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp('dist')
    sd, kmap, base = synthetic_experts(depth=3, width=8, vl_layers=1, spread=0.3, seed=0)
    save_sharded(sd, d/'experts', max_shard_bytes=4096)  # several shards: the reader streams across them
    save_sd(base, d/'w0.safetensors'); save_sd({'embed.weight': base['embed.weight']}, d/'bad_base.safetensors')
    (d/'kmap.json').write_text(json.dumps(kmap))
    split = {ek: base[s].clone() for s, ex in kmap.items() for ek in ex.values()}
    save_sd(split, d/'split.safetensors')  # every expert = W0
    return d

def _rows(p): return list(csv.DictReader(open(p)))

def test_distance_end_to_end(ckpt, tmp_path):
    rc, out, err = _run(ckpt/'experts', '--base', ckpt/'w0.safetensors', '--key-map', ckpt/'kmap.json', '--out', tmp_path/'o', '--k', '20')
    assert rc == 0, err
    assert 'pair v-l' in out and out.count('\n') >= 8
    out = tmp_path/'o'
    assert sorted(p.name for p in out.iterdir()) == ['distances.csv', 'heatmap.png', 'layers.csv', 'layers.png', 'settings.json', 'summary.csv']
    assert not list(out.glob('.*'))  # no temporary files left behind
    rows = _rows(out/'distances.csv')
    assert len(rows) == 13 * (1 + 1 + 3)  # layers 0, 1: v-l; layer 2: v-l, v-vl, l-vl
    assert all(0 <= float(r[m]) <= 1 for r in rows for m in ('ssd', 'tssd')) and sum(float(r['ssd']) > 0 for r in rows) > len(rows) // 2
    summ = {r['part']: r for r in _rows(out/'summary.csv')}
    assert set(summ) >= {'group attn', 'group ffn', 'group norm', 'pair v-l', 'all'}
    assert json.loads((out/'settings.json').read_text())['space'] == 'modality vectors'
    assert (out/'heatmap.png').read_bytes()[:4] == b'\x89PNG'

def test_identical_experts_give_zero(ckpt, tmp_path, capsys):
    for scope in ('tensor', 'global'):
        rc, out, err = _main(capsys, ckpt/'split.safetensors', '--base', ckpt/'w0.safetensors', '--key-map', ckpt/'kmap.json', '--out', tmp_path/scope, '--scope', scope)
        assert rc == 0, err
        for row in _rows(tmp_path/scope/'summary.csv'):
            assert [float(row[m]) for m in ('l2', 'cos', 'ssd', 'tssd')] == [0., 0., 0., 0.]

def test_two_models(ckpt, tmp_path, capsys):
    rc, out, err = _main(capsys, ckpt/'w0.safetensors', '--other', ckpt/'w0.safetensors', '--out', tmp_path/'o')
    assert rc == 0, err
    assert float({x['part']: x for x in _rows(tmp_path/'o'/'summary.csv')}['all']['l2']) == 0.

@pytest.mark.parametrize('args,msg', [
    (['{d}/missing'], 'no such file'),
    (['{d}/experts'], 'no config.json'),
    (['{d}/experts', '--key-map', '{d}/w0.safetensors'], 'malformed JSON'),
    (['{d}/experts', '--key-map', '{d}/kmap.json', '--k', '0'], 'k=0.0'),
    (['{d}/experts', '--key-map', '{d}/kmap.json', '--pairs', 'x-y'], 'no pair'),
    (['{d}/experts', '--key-map', '{d}/kmap.json', '--base', '{d}/bad_base.safetensors'], "no key 'blocks.0.norm1.weight'"),
])
def test_errors_one_line_exit_2(ckpt, tmp_path, capsys, args, msg):
    rc, out, err = _main(capsys, *[a.format(d=ckpt) for a in args], '--out', tmp_path/'o')
    assert rc == 2, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0], err

def test_error_in_a_fresh_process(ckpt, tmp_path):
    rc, out, err = _run(ckpt/'experts', '--out', tmp_path/'o')
    assert rc == 2 and len(err.strip().splitlines()) == 1 and 'no config.json' in err, err
    assert not (tmp_path/'o').exists()
