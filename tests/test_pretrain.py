"""`vlmerge pretrain` end to end: SIGKILL then --resume gives bitwise the same weights as an uninterrupted run;
two processes under torchrun (gloo) match one process with the same global batch."""
import os, signal, subprocess, sys, time
from pathlib import Path
import torch
from vlmerge.core import load_sd, sd_equal

BIN = Path(sys.executable).parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}

CONFIG = """model: {preset: tiny, variant: specific}
data: {source: world, size: tiny}
objectives: [itc, itm, mlm]
k_seed: 4
train: {steps: 8, batch_size: 8, lr: 0.001, warmup: 2, log_every: 1, ckpt_every: 2, device: cpu}
"""


def pretrain(*args, **kw):
    return subprocess.run([str(BIN/'vlmerge'), 'pretrain', *map(str, args), '--no-progress'], env=ENV,
                          capture_output=True, text=True, **kw)


def weights(out): return load_sd(Path(out)/'pretrain'/'model'/'model.safetensors')


def test_sigkill_and_resume(tmp_path):
    (tmp_path/'c.yaml').write_text(CONFIG)
    ref = pretrain(tmp_path/'c.yaml', '--out', tmp_path/'ref')
    assert ref.returncode == 0, ref.stderr
    out = tmp_path/'run'
    p = subprocess.Popen([str(BIN/'vlmerge'), 'pretrain', str(tmp_path/'c.yaml'), '--out', str(out), '--no-progress'],
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out/'pretrain'/'ckpt'/'step-4').exists() and time.time() < deadline and p.poll() is None: time.sleep(0.02)
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (out/'pretrain'/'model').exists(), 'the run finished before it could be killed'
    r = pretrain(tmp_path/'c.yaml', '--out', out, '--resume')
    assert r.returncode == 0, r.stderr
    assert sd_equal(weights(out), weights(tmp_path/'ref'))


def test_two_processes_match_one(tmp_path):
    # a deterministic data pipeline (no augmentation, no masking): each process would otherwise draw its own
    cfg = CONFIG.replace('objectives: [itc, itm, mlm]', 'objectives: [itc]').replace('k_seed: 4', 'k_seed: 0')
    cfg = cfg.replace('size: tiny}', 'size: tiny, augment: false}')
    (tmp_path/'c.yaml').write_text(cfg)
    one = pretrain(tmp_path/'c.yaml', '--out', tmp_path/'one', '--set', 'train.steps=4')
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', '29541',
                          str(BIN/'vlmerge'), 'pretrain', str(tmp_path/'c.yaml'), '--out', str(tmp_path/'two'),
                          '--set', 'train.steps=4', '--no-progress'], env=ENV, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr
    a, b = weights(tmp_path/'one'), weights(tmp_path/'two')
    assert a.keys() == b.keys()
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def test_bad_config_is_one_line(tmp_path):
    (tmp_path/'c.yaml').write_text('objectives: [itc, mim]\n')
    r = pretrain(tmp_path/'c.yaml', '--out', tmp_path/'x')
    assert r.returncode == 2 and "unknown objective 'mim'" in r.stderr and len(r.stderr.strip().splitlines()) == 1
