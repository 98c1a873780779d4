"`vlmerge merge` end to end: a subprocess per run; user errors print one line on stderr, exit 2, write nothing, change no input."
import hashlib, json, math, os, subprocess, sys
from pathlib import Path
import pytest, torch, yaml
from vlmerge.core import save_sharded, save_sd, load_sd, sd_equal

ROOT = Path(__file__).resolve().parents[1]
VLMERGE = ROOT/'.venv'/'bin'/'vlmerge'


def run(*args, inproc=False):
    "Run `vlmerge merge ARGS`: the console script in a subprocess, or (`inproc`, for the many error cases) `vlmerge.cli.main`."
    if inproc:
        import contextlib, io, types
        from vlmerge.cli import main
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out): rc = main(['merge', *map(str, args)])
        return types.SimpleNamespace(returncode=rc, stdout=out.getvalue(), stderr=err.getvalue())
    if VLMERGE.exists(): cmd = [str(VLMERGE), 'merge', *map(str, args)]
    else: cmd = [sys.executable, '-c', 'import sys; from vlmerge.cli import main; sys.exit(main(sys.argv[1:]))', 'merge', *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)


def rand_sd(seed, depth=2, width=8):
    g = torch.Generator().manual_seed(seed)
    sd = {'model.embed_tokens.weight': torch.randn(16, width, generator=g), 'model.norm.weight': torch.randn(width, generator=g)}
    for i in range(depth):
        sd |= {f'model.layers.{i}.self_attn.q_proj.weight': torch.randn(width, width, generator=g),
               f'model.layers.{i}.mlp.up_proj.weight': torch.randn(2 * width, width, generator=g),
               f'model.layers.{i}.input_layernorm.weight': torch.randn(width, generator=g)}
    return sd


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).rglob('*')) if p.is_file()}


@pytest.fixture()
def models(tmp_path):
    sds = {n: rand_sd(i) for i, n in enumerate(['base', 'a', 'b'])}
    for n, sd in sds.items():
        save_sharded(sd, tmp_path/n, max_shard_bytes=600)
        (tmp_path/n/'config.json').write_text(json.dumps({'model_type': 'toy', 'name': n}))
    return tmp_path, sds


def write_cfg(tmp, cfg, name='merge.yaml'):
    p = tmp/name; p.write_text(yaml.safe_dump(cfg)); return p


def ties_cfg(tmp, **over):
    return {'merge_method': 'ties', 'base_model': str(tmp/'base'),
            'models': [{'model': str(tmp/'a'), 'parameters': {'weight': 1.0, 'density': 0.5}},
                       {'model': str(tmp/'b'), 'parameters': {'weight': 0.5, 'density': [0.2, 0.8]}}],
            'parameters': {'normalize': True}, 'dtype': 'float32'} | over


def test_merge_ok(models):
    tmp, sds = models
    before = {n: digest(tmp/n) for n in sds}
    r = run(write_cfg(tmp, ties_cfg(tmp)), '--out', tmp/'out', '--no-progress', '--max-shard-size', '700')
    assert r.returncode == 0, r.stderr
    out = load_sd(tmp/'out')
    assert set(out) == set(sds['a'])
    from vlmerge.merge.ops import merge_tensors
    k = 'model.layers.1.mlp.up_proj.weight'
    assert torch.equal(out[k], merge_tensors('ties', [sds['a'][k], sds['b'][k]], sds['base'][k], weight=[1., .5], density=[.5, .8]))
    assert len(list((tmp/'out').glob('*.safetensors'))) > 1 and (tmp/'out'/'model.safetensors.index.json').exists()
    assert json.loads((tmp/'out'/'config.json').read_text())['name'] == 'base'
    assert {n: digest(tmp/n) for n in sds} == before  # inputs untouched


def test_linear_weights_one_zero(models):
    tmp, sds = models
    cfg = {'merge_method': 'linear', 'models': [{'model': str(tmp/'a'), 'parameters': {'weight': 1}}, {'model': str(tmp/'b'), 'parameters': {'weight': 0}}]}
    r = run(write_cfg(tmp, cfg), '--out', tmp/'lin', '--no-progress')
    assert r.returncode == 0, r.stderr
    assert sd_equal(load_sd(tmp/'lin'), sds['a'])


def test_dry_run_writes_nothing(models):
    tmp, _ = models
    r = run(write_cfg(tmp, ties_cfg(tmp)), '--out', tmp/'dry', '--dry-run', inproc=True)
    assert r.returncode == 0, r.stderr
    assert not (tmp/'dry').exists()


def _bad_models(tmp, sds):
    "Broken variants of model b, each a checkpoint folder; -> {case: (folder, text expected in the message)}."
    b = sds['b']; cases = {}
    def put(name, sd): save_sd(sd, tmp/name/'model.safetensors'); return tmp/name
    cases['missing'] = (put('b_missing', {k: v for k, v in b.items() if k != 'model.norm.weight'}), "missing key 'model.norm.weight'")
    cases['extra'] = (put('b_extra', b | {'lm_head.weight': torch.zeros(2, 8)}), "extra key 'lm_head.weight'")
    cases['shape'] = (put('b_shape', b | {'model.norm.weight': torch.zeros(9)}), "'model.norm.weight' has shape (9,)")
    cases['dtype'] = (put('b_dtype', b | {'model.norm.weight': b['model.norm.weight'].half()}), "'model.norm.weight' has dtype torch.float16")
    cases['nan'] = (put('b_nan', b | {'model.layers.1.mlp.up_proj.weight': b['model.layers.1.mlp.up_proj.weight'] * math.nan}), "'model.layers.1.mlp.up_proj.weight' contains NaN or Inf")
    (tmp/'b_trunc').mkdir(); src = tmp/'b_shape'/'model.safetensors'
    (tmp/'b_trunc'/'model.safetensors').write_bytes(src.read_bytes()[:-10])
    cases['truncated'] = (tmp/'b_trunc', 'b_trunc/model.safetensors')
    (tmp/'b_corrupt').mkdir(); (tmp/'b_corrupt'/'model.safetensors').write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": garbage!!')
    cases['corrupt'] = (tmp/'b_corrupt', 'b_corrupt/model.safetensors: not a readable safetensors file')
    return cases


def check_error(r, tmp, out, *texts):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    for t in texts: assert t in lines[0], (t, lines[0])
    assert not Path(out).exists()
    assert not [p for p in Path(out).parent.iterdir() if p.name.startswith('.')], 'temporary files left behind'


def test_bad_models(models):
    tmp, sds = models
    for case, (folder, text) in _bad_models(tmp, sds).items():
        before = digest(folder)
        cfg = ties_cfg(tmp); cfg['models'][1]['model'] = str(folder)
        r = run(write_cfg(tmp, cfg), '--out', tmp/'out', '--no-progress', inproc=case != 'nan')
        check_error(r, tmp, tmp/'out', text)
        assert digest(folder) == before, case


@pytest.mark.parametrize('change,text', [  # in-process through vlmerge.cli.main (the same code path as the console script)
    ({'merge_method': 'tiez'}, "unknown merge method 'tiez'"),
    ({'parameters': {'normalise': True}}, "has no parameter 'normalise'"),
    ({'parameters': {'lambda': 'big'}}, "'lambda' = 'big' is not a valid float"),
    ({'colour': 'red'}, "unknown key 'colour'"),
    ({'base_model': None}, "needs a base model"),
    ({'tokenizer_source': 'union'}, "'tokenizer_source' is not supported"),
])
def test_bad_config(models, change, text):
    tmp, _ = models
    cfg = {k: v for k, v in (ties_cfg(tmp) | change).items() if v is not None}
    check_error(run(write_cfg(tmp, cfg), '--out', tmp/'out', '--no-progress', inproc=True), tmp, tmp/'out', text)


def test_bad_per_model_parameter(models):
    tmp, _ = models
    cfg = ties_cfg(tmp); cfg['models'][0]['parameters']['density'] = 1.5
    check_error(run(write_cfg(tmp, cfg), '--out', tmp/'out'), tmp, tmp/'out', "'density' = 1.5 is outside [0.0, 1.0]")  # subprocess
    cfg = ties_cfg(tmp); cfg['models'][0]['parameters']['gamma'] = 0.1
    check_error(run(write_cfg(tmp, cfg), '--out', tmp/'out', inproc=True), tmp, tmp/'out', "no per-model parameter 'gamma'")


def test_output_inside_input(models):
    tmp, _ = models
    p = write_cfg(tmp, ties_cfg(tmp))
    for i, out in enumerate((tmp/'a', tmp/'a'/'merged', tmp/'base'/'x')):
        r = run(p, '--out', out, inproc=i > 0)
        assert r.returncode == 2 and 'is inside the input' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = run(p, '--out', tmp, inproc=True)
    assert r.returncode == 2 and 'contains the input' in r.stderr


def test_missing_config(tmp_path):
    check_error(run(tmp_path/'nope.yaml', '--out', tmp_path/'o'), tmp_path, tmp_path/'o', 'nope.yaml: no such file')
    (tmp_path/'bad.yaml').write_text('merge_method: [linear\n')
    check_error(run(tmp_path/'bad.yaml', '--out', tmp_path/'o', inproc=True), tmp_path, tmp_path/'o', 'bad.yaml: cannot parse')
