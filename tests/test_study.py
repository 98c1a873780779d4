"""`vlmerge study` end to end on a minimal grid: every output file, and resume after a kill skips finished cells."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

BIN = Path(sys.executable).parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}
MINI = """seeds: [0]
k_seed: [0, 2]
steps: 2
methods: [{method: interpolation, alpha: 0.5}, {method: arithmetic, lambda: 1.0}, {method: regmean, alpha: 0.9}]
tasks: [classification, nlvr2]
alpha_curve: [0.0, 1.0]
gram_batches: 1
naive_steps: both
pretrain: {batch_size: 8, lr: 0.001, warmup: 0, log_every: 1}
finetune: {train: {steps: 2, batch_size: 8}}
"""
OUTPUTS = ['distances.csv', 'floors.json', 'index.html', 'index.md', 'interpolation_alpha.png', 'naive_vs_recipe.md', 'predictors.md', 'ranking.md', 'results.csv',
           'metric_vs_score.png', 'score_vs_kseed.png', 'study.yaml', 'tables.md', 'worker-0.log', 'worker-1.log', 'workers.yaml']


def study(*args, **kw):
    return subprocess.run([str(BIN/'vlmerge'), 'study', *map(str, args)], env=ENV, capture_output=True, text=True, **kw)


def test_minimal_grid_and_resume(tmp_path):
    (tmp_path/'s.yaml').write_text(MINI)
    out = tmp_path/'out'
    p = subprocess.Popen([str(BIN/'vlmerge'), 'study', str(tmp_path/'s.yaml'), '--out', str(out)], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(out.glob('cells/*/result.json')) and time.time() < deadline and p.poll() is None: time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    done = {f: f.stat().st_mtime_ns for f in out.glob('cells/*/result.json')}
    assert done, 'no cell finished before the kill'
    r = study(tmp_path/'s.yaml', '--out', out, '--workers', '2')              # resume in two worker processes
    assert r.returncode == 0, r.stderr
    assert all(f.stat().st_mtime_ns == t for f, t in done.items())          # finished cells were skipped
    cells = sorted(p.parent.name for p in out.glob('cells/*/result.json'))
    assert len(cells) == 3 * (3 + 1) + 1          # (naive, recipe, step-matched naive) x (3 merges + unmerged) + agnostic
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == sorted(OUTPUTS)
    rows = (out/'results.csv').read_text().splitlines()
    header = rows[0].split(',')
    assert {'id', 'kind', 'k_seed', 'method', 'task', 'metric', 'value', 'tau_ssd'} <= set(header)
    tasks = {row.split(',')[header.index('task')] for row in rows[1:]}
    assert tasks == {'classification', 'nlvr2', 'zero_shot_retrieval', 'zero_shot_classification'}
    md = (out/'tables.md').read_text()
    assert '### classification (top1)' in md and '| agnostic |' in md and '± ' in md
    assert 'Floors on the same test split' in md and 'text-only' in md and 'vs highest floor' in md and 'highest floor (' in md
    assert r.stdout.startswith('[')                                       # a progress line first, no blank lines from the world builder
    res = json.loads((out/'cells'/'s0-k2-specific-merged-regmean_alpha_0.9'/'result.json').read_text())
    assert set(res['scores']) >= {'classification', 'nlvr2'} and 0 <= res['distances']['tau_ssd'] <= 1
    assert 'Study' in (out/'index.html').read_text()
    # the step-matched naive control: K_seed 0 with K_seed + K = 4 modality-specific steps, reported beside the paper's naive
    matched = json.loads((out/'cells'/'s0-k0-n4-specific-unmerged'/'result.json').read_text())
    assert matched['k_seed'] == 0 and matched['steps'] == 4 and matched['naive'] == 'matched'
    assert json.loads((out/'pretrain'/'s0-k0-specific-n4'/'pretrain'/'model'/'vlmerge.json').read_text())['steps'] == 4
    assert json.loads((out/'pretrain'/'s0-k0-specific'/'pretrain'/'model'/'vlmerge.json').read_text())['steps'] == 2
    idx = (out/'index.md').read_text()
    assert 'naive, matched (K_seed + K)' in idx and 'counts modality-specific steps' in idx
    assert 'Within pre-training groups' in idx and 'within pair acc.' in idx
    # RegMean merged once per task, each from its own task's Grams
    assert (out/'cells'/'s0-k2-specific-merged-regmean_alpha_0.9'/'model-nlvr2'/'config.json').exists()
    assert (out/'pretrain'/'s0-k2-specific'/'pretrain'/'model'/'grams-nlvr2.safetensors').exists()


def test_report_only_and_bad_config(tmp_path):
    (tmp_path/'bad.yaml').write_text('variants: [agnostic]\n')
    r = study(tmp_path/'bad.yaml', '--out', tmp_path/'o')
    assert r.returncode == 2 and "'agnostic' is not a modality-specific variant" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    (tmp_path/'s.yaml').write_text(MINI)
    r = study(tmp_path/'s.yaml', '--out', tmp_path/'empty', '--report-only')
    assert r.returncode == 2 and 'no finished cells' in r.stderr
    r = study(tmp_path/'s.yaml', '--out', tmp_path/'o2', '--shard', '3/2')
    assert r.returncode == 2 and '--shard' in r.stderr


def test_study_cpu_config(root):
    # make study-cpu: the demo's grid (model, world, budgets, groups) over 3 seeds and the paper's three merges
    from vlmerge.core import load_config, from_dict
    from vlmerge.study import StudyConfig, DEMO, expand, task_finetune, _group_key
    c, d = load_config(StudyConfig, root/'configs'/'study-cpu.yaml', []), from_dict(StudyConfig, DEMO)
    for f in ('model', 'data', 'objectives', 'steps', 'k_seed', 'variants', 'naive_steps', 'pretrain', 'tasks', 'baselines'):
        assert getattr(c, f) == getattr(d, f), f
    assert all(task_finetune(c, t) == task_finetune(d, t) for t in c.tasks)
    assert len(c.seeds) == 3 and len(c.methods) == 3 and d.methods[0] in c.methods
    assert {_group_key(x, c)[1:] for x in expand(c)} == {_group_key(x, d)[1:] for x in expand(d)}
    assert len(expand(c)) == 3 * (1 + 2 * 3)


def test_study_cpu_sweep_config(root):
    # the K_seed sweep (make study-cpu-sweep): K_seed over 4 values, 2 sharing variants, the step-matched naive control
    from vlmerge.core import load_config
    from vlmerge.study import StudyConfig, DEMO, expand, pretrain_settings
    c = load_config(StudyConfig, root/'configs'/'study-cpu-sweep.yaml', [])
    assert len(set(c.k_seed)) >= 4 and len(c.variants) >= 2 and c.naive_steps == 'both' and len(c.seeds) >= 3
    assert {n for k, n, naive in pretrain_settings(c) if naive == 'matched'} == {c.steps + k for k in c.k_seed if k}
    assert c.model == DEMO['model'] and c.steps == DEMO['steps']     # the demo's model and budget per stage
    groups = {(x['k_seed'], x['steps']) for x in expand(c) if x['kind'] == 'merged'}
    assert len(groups) == len(c.k_seed) + len([k for k in c.k_seed if k])


def test_old_configs_keep_their_cells(root):
    # the paper's three methods are registered methods now; old configs name them as before and keep their cell ids
    from vlmerge.core import load_config
    from vlmerge.study import StudyConfig, DEMO, method_spec, method_label
    from vlmerge.core import from_dict
    for c in [load_config(StudyConfig, root/'configs'/f, []) for f in ('study-cpu.yaml', 'study-cpu-sweep.yaml', 'study-gpu.yaml')]:
        assert [method_label(m) for m in c.methods] == ['interpolation(alpha=0.5)', 'arithmetic(lambda=1.0)', 'regmean(alpha=0.9)']
        assert [method_spec(m)['method'] for m in c.methods] == ['interpolation', 'task_arithmetic', 'regmean']


def test_fold_study_config(root):
    # every method that can fold the study's experts, each with a 2-point sweep, 3 seeds, the five tasks
    from collections import Counter
    from vlmerge.core import load_config
    from vlmerge.study import StudyConfig, DEMO, TASKS, expand, fold_methods, method_spec, _expert_counts, task_finetune
    c, g = (load_config(StudyConfig, root/'configs'/f'fold-study-{x}.yaml', []) for x in ('cpu', 'gpu'))
    n = Counter(method_spec(m)['method'] for m in c.methods)
    assert set(n) == {name for name, _ in fold_methods(_expert_counts(c.model))} and set(n.values()) == {2}
    # the CPU study: the demo's model, world and pre-training; the three tasks that are cheap to fine-tune on 2 cores, and
    # zero-shot scores (VQA and NLVR2 are left to the GPU config for time)
    assert len(c.seeds) == 3 and list(c.tasks) == ['retrieval', 'classification', 'segmentation'] and c.model == DEMO['model']
    assert c.steps == DEMO['steps'] and c.data.size == DEMO['data']['size'] and c.pretrain == DEMO['pretrain'] and c.zero_shot
    assert {t: task_finetune(c, t)['train'] for t in c.tasks} == {'retrieval': {'steps': 50}, 'classification': {'steps': 50}, 'segmentation': {'steps': 400}}
    assert len({(x['k_seed'], x['steps']) for x in expand(c)}) == 2          # one pre-trained group (plus the agnostic baseline)
    assert len(expand(c)) == 3 * (2 * len(n) + 2)
    # the GPU study: the same merges on configs/study-gpu.yaml's model, all five tasks
    s = load_config(StudyConfig, root/'configs'/'study-gpu.yaml', [])
    assert g.methods == c.methods and list(g.tasks) == list(TASKS) and g.model == s.model and g.data == s.data and g.steps == s.steps
    assert g.k_seed == [s.steps] and len(g.seeds) == 3 and len(expand(g)) == len(expand(c))


FOLD = """seeds: [0, 1]
k_seed: [2]
steps: 2
methods: [{method: ties, density: 0.5}, {method: karcher, max_iter: 2}, {merge_method: multislerp, base_model: w0}]
baselines: [unmerged]
tasks: [classification]
zero_shot: false
alpha_curve: []
pretrain: {batch_size: 8, lr: 0.001, warmup: 0, log_every: 1}
finetune: {train: {steps: 2, batch_size: 8}}
"""


def test_fold_study_tiny(tmp_path):
    # a tiny fold study: newer methods fold the experts like the paper's, and the report ranks them with CIs over seeds
    (tmp_path/'f.yaml').write_text(FOLD)
    r = study(tmp_path/'f.yaml', '--out', tmp_path/'o', timeout=900)
    assert r.returncode == 0, r.stderr
    cells = sorted(p.parent.name for p in (tmp_path/'o').glob('cells/*/result.json'))
    assert len(cells) == 2 * (3 + 1), cells
    md = (tmp_path/'o'/'ranking.md').read_text()
    for m in ('ties(density=0.5)', 'karcher(max_iter=2)', 'multislerp(base_model=w0)', 'unmerged (reference)'): assert f'| {m} |' in md, md
    ranks = [l.split('|')[1].strip() for l in md.splitlines() if l.startswith('| ') and 'rank' not in l]
    assert ranks == ['1', '2', '3', '–'] and '95% CI over seeds' in md
    res = json.loads((tmp_path/'o'/'cells'/'s0-k2-specific-merged-multislerp_base_model_w0'/'result.json').read_text())
    assert res['spec'] == {'merge_method': 'multislerp', 'base_model': 'w0'} and 'classification' in res['scores']
    r = study(tmp_path/'f.yaml', '--out', tmp_path/'bad', '--set', 'methods=[{method: fisher}]')
    assert r.returncode == 2 and 'which the study does not collect' in r.stderr
