"A killed `vlmerge merge` leaves temporary folders; the next run into the same output removes them (issue 16)."
import os, signal, subprocess, sys, time
from pathlib import Path
import torch, yaml
from vlmerge.core import save_sd, open_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def merge_cmd(cfg, out):
    code = 'import sys; from vlmerge.cli import main; sys.exit(main(sys.argv[1:]))'
    return [sys.executable, '-c', code, 'merge', str(cfg), '--out', str(out), '--no-progress', '--threads', '1']


def temporaries(out):
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f'.{out.name}.'))


def test_killed_merge_leaves_nothing_after_the_next_run(tmp_path):
    g = torch.Generator().manual_seed(0)
    base = {f'layers.{i}.weight': torch.randn(1024, 1024, generator=g) for i in range(8)}  # 8.4M parameters, 32 MiB
    for n in ('base', 'a', 'b', 'c'):
        save_sd(base if n == 'base' else {k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in base.items()}, tmp_path/n/'model.safetensors')
    cfg = tmp_path/'ties.yaml'
    cfg.write_text(yaml.safe_dump({'merge_method': 'ties', 'base_model': str(tmp_path/'base'), 'parameters': {'density': 0.2},
                                   'models': [{'model': str(tmp_path/n)} for n in 'abc']}))
    out, env = tmp_path/'merged', {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}
    p = subprocess.Popen(merge_cmd(cfg, out), env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.time()
    while not temporaries(out) and p.poll() is None and time.time() - t0 < 120: time.sleep(0.005)
    time.sleep(0.2)  # let it write part of the output
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL, p.stderr.read().decode()[-2000:]
    left = temporaries(out)
    assert left and not out.exists(), left  # killed mid-write: a temporary folder, no output
    assert all(f'.{p.pid}-' in n for n in left)  # marked with the writer's pid
    r = subprocess.run(merge_cmd(cfg, out), env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert temporaries(out) == [], temporaries(out)  # the stale folder is gone, and this run left none
    assert sorted(open_checkpoint(out).keys()) == sorted(base)


def test_merge_help_says_so():
    code = 'import sys; from vlmerge.cli import main; sys.exit(main(sys.argv[1:]))'
    r = subprocess.run([sys.executable, '-c', code, 'merge', '--help'], env={**os.environ, 'PYTHONPATH': str(ROOT)},
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and 'killed run' in r.stdout and 'removed' in r.stdout, r.stdout
