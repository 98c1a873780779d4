"""The training loop across processes: SIGKILL and resume gives bitwise the same weights; two processes (torchrun,
gloo) match one process with the same global batch."""
import os, signal, subprocess, sys, time
from pathlib import Path
import torch
from vlmerge.core import load_sd, sd_equal

HERE = Path(__file__).resolve().parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(HERE)}


def run(*args, **kw):
    return subprocess.run([sys.executable, str(HERE/'train_toy.py'), *map(str, args)], env=ENV, capture_output=True, text=True, **kw)


def final(out): return load_sd(Path(out)/'ckpt'/'final'/'model.safetensors')


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    ref = run(tmp_path/'ref', '--steps', 30, '--dropout', 0.1)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path/'killed'
    p = subprocess.Popen([sys.executable, str(HERE/'train_toy.py'), str(out), *map(str, ['--steps', 30, '--ckpt-every', 5,
                          '--dropout', 0.1, '--sleep', 0.05])], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((out/'ckpt').glob('step-10')) and time.time() < deadline: time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (out/'ckpt'/'final').exists(), 'the run finished before it could be killed'
    r = run(out, '--steps', 30, '--ckpt-every', 5, '--dropout', 0.1, '--resume')
    assert r.returncode == 0, r.stderr
    assert sd_equal(final(out), final(tmp_path/'ref'))


def test_two_processes_match_one(tmp_path):
    one = run(tmp_path/'one', '--steps', 20)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', '29533',
                          str(HERE/'train_toy.py'), str(tmp_path/'two'), '--steps', '20'], env=ENV, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr
    a, b = final(tmp_path/'one'), final(tmp_path/'two')
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    la = (tmp_path/'one'/'metrics.csv').read_text().splitlines()[-1].split(',')[1]
    lb = (tmp_path/'two'/'metrics.csv').read_text().splitlines()[-1].split(',')[1]
    assert abs(float(la) - float(lb)) < 1e-5
