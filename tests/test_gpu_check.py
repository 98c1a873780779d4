"The GPU check script (benchmarks/gpu_check.sh) runs end to end on CPU in its dry run and prints its one table."
import os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_cpu_dry_run(tmp_path):
    env = {**os.environ, 'PY': sys.executable, 'OMP_NUM_THREADS': '1'}
    r = subprocess.run(['bash', str(ROOT/'benchmarks'/'gpu_check.sh'), '--cpu-dry-run', '--out', str(tmp_path/'g')],
                       capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    table = (tmp_path/'g'/'table.md').read_text()
    assert r.stdout.rstrip().endswith(table.rstrip())                   # the table closes the output
    assert 'vlmerge / reference step time' in table and 'MFU' in table  # the bf16 / MFU code path ran
    assert 'DDP 2 processes | skipped: CPU dry run' in table
    assert (tmp_path/'g'/'study'/'index.md').exists() and 'study (configs/study-gpu.yaml, dry run)' in table


def test_gpu_check_rejects_unknown_argument():
    r = subprocess.run(['bash', str(ROOT/'benchmarks'/'gpu_check.sh'), '--bogus'], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and 'unknown argument --bogus' in r.stderr
