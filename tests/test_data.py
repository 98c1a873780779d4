"""The data component end to end: the world cache (env var, key, atomic rebuild), byte determinism
across processes, and a full write-and-load round trip of every format from a fresh process."""
import hashlib, json, os, subprocess, sys
from pathlib import Path
import pytest
from vlmerge.core import VLMergeError
from vlmerge.data.world import build_world, load_world, world_path, TASKS, GEN_VERSION

PY = sys.executable


def digest(p: Path) -> dict:
    return {str(f.relative_to(p)): hashlib.md5(f.read_bytes()).hexdigest() for f in sorted(p.rglob('*')) if f.is_file()}


def test_env_var_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv('VLMERGE_DATA', str(tmp_path))
    p = build_world(seed=3, size='tiny', image_size=32, tasks=('classification',))
    assert p == tmp_path/f'world-v{GEN_VERSION}-seed3-tiny-32px'
    assert json.loads((p/'world.json').read_text())['seed'] == 3
    assert world_path(seed=3, image_size=48) != p  # every parameter is in the key
    assert not any(f.name.startswith('.') for f in tmp_path.iterdir())  # no temporary folders left behind


def test_same_bytes_in_another_process(tmp_path):
    a = build_world(seed=7, size='tiny', image_size=32, path=tmp_path/'a')
    code = f"from vlmerge.data.world import build_world; build_world(seed=7, size='tiny', image_size=32, path={str(tmp_path/'b')!r})"
    subprocess.run([PY, '-c', code], check=True, env={**os.environ, 'PYTHONHASHSEED': '123'})
    assert digest(a) == digest(tmp_path/'b'/a.name)


def test_load_builds_missing_task(tmp_path):
    build_world(path=tmp_path, tasks=('vqa',))
    dd = load_world('segmentation', path=tmp_path)
    assert set(dd) == {'train', 'val', 'test'} and len(dd['train']) == 24
    with pytest.raises(VLMergeError, match="unknown task 'depth'"): load_world('depth', path=tmp_path)


def test_interrupted_build_leaves_cache_usable(tmp_path, monkeypatch):
    import vlmerge.data.world as W
    def boom(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(W, 'make_examples', boom)
    with pytest.raises(KeyboardInterrupt): W.build_world(path=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    monkeypatch.undo()
    assert len(W.load_world('nlvr2', path=tmp_path)['val']) == 8


def test_formats_round_trip_in_fresh_process(tmp_path):
    code = f"""
import numpy as np
from pathlib import Path
from vlmerge.data.world import load_world, SEG_CLASSES, CLASSES
from vlmerge.data import formats as F
t = Path({str(tmp_path)!r})
px = lambda ds, c='image': [np.asarray(x) for x in ds[c]]
r = load_world('retrieval', path=t)
b = F.load_karpathy(F.write_karpathy(r, t/'f30k', 'flickr30k')/'dataset_flickr30k.json', t/'f30k'/'images')
assert b['test']['captions'] == r['test']['captions']
s = load_world('segmentation', path=t)
b = F.load_ade20k(F.write_ade20k(s, t/'ade', SEG_CLASSES))
assert all((x == y).all() for x, y in zip(px(b['val'], 'mask'), px(s['val'], 'mask')))
print('ok')
"""
    out = subprocess.run([PY, '-c', code], check=True, capture_output=True, text=True)
    assert out.stdout.strip().endswith('ok')


def test_tokenizer_loads_with_auto(tmp_path):
    from transformers import AutoTokenizer
    from vlmerge.data.text import world_tokenizer
    tok = world_tokenizer(path=tmp_path)
    folder = world_path(path=tmp_path)/'tokenizer-400'
    auto = AutoTokenizer.from_pretrained(str(folder))
    ids = auto('how many turquoise crosses are there?')['input_ids']
    assert ids == tok('how many turquoise crosses are there?')['input_ids'] and auto.unk_token_id not in ids
