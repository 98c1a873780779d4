"""Benchmark (not a test): all four distance metrics (L2, cosine, SSD, TSSD) streamed over two 110M-parameter fp32
models stored as safetensors, raw and as modality vectors against a third (W0); wall time, CPU time and peak memory.

    .venv/bin/python benchmarks/metrics_bench.py [--dir TMPDIR] [--keep] [--k 10]

The models have BERT-base shapes in vlmerge key style (embeddings 23.8M + 12 blocks of 7.1M + pooler); model B =
model A + 1% noise, W0 = model A + another 1% noise. Each measurement runs in a fresh process that opens the checkpoints
lazily. Memory is reported above the process's own level after its imports (and after compiling or loading the fused
kernels, timed separately): peak RSS (VmHWM, which counts the checkpoint pages mapped from the page cache) and peak
anonymous memory (RssAnon sampled every 2 ms: the heap the computation itself allocates). Metrics print with 10
significant digits so that two runs (e.g. before and after a change, with PYTHONPATH pointing at either) can be
compared to 1e-6 relative. --keep writes the models straight into --dir and reuses them."""
import argparse, json, os, subprocess, sys, tempfile, threading, time
from pathlib import Path


def _status(field):
    for line in open('/proc/self/status'):
        if line.startswith(field + ':'): return int(line.split()[1]) / 1024  # MiB
    return float('nan')


def make(d: Path):
    import torch
    from vlmerge.core import save_sd, sd_numel
    if all((d/f'{n}.safetensors').exists() for n in ('a', 'b', 'w0')):
        from vlmerge.core import open_checkpoint
        r = open_checkpoint(d/'a.safetensors'); n = sum(r.numel(k) for k in r.keys())
        return print(json.dumps({'params': n, 'bytes_each': 4 * n}))
    g = torch.Generator().manual_seed(0); w, h, depth = 768, 3072, 12
    shapes = {'embeddings.word.weight': (30522, w), 'embeddings.position.weight': (512, w), 'embeddings.token_type.weight': (2, w),
              'embeddings.norm.weight': (w,), 'embeddings.norm.bias': (w,)}
    for i in range(depth):
        shapes.update({f'blocks.{i}.{k}': s for k, s in {
            'norm1.weight': (w,), 'norm1.bias': (w,), 'attn.qkv.weight': (3 * w, w), 'attn.qkv.bias': (3 * w,),
            'attn.proj.weight': (w, w), 'attn.proj.bias': (w,), 'norm2.weight': (w,), 'norm2.bias': (w,),
            'mlp.fc1.weight': (h, w), 'mlp.fc1.bias': (h,), 'mlp.fc2.weight': (w, h), 'mlp.fc2.bias': (w,)}.items()})
    shapes.update({'pooler.dense.weight': (w, w), 'pooler.dense.bias': (w,)})
    a = {k: torch.randn(*s, generator=g) * 0.02 for k, s in shapes.items()}
    save_sd(a, d/'a.safetensors')
    for name in ('b', 'w0'):  # each: A + 1% noise
        save_sd({k: v + 0.01 * v.std() * torch.randn(v.shape, generator=g) for k, v in a.items()}, d/f'{name}.safetensors')
    print(json.dumps({'params': sd_numel(a), 'bytes_each': sum(v.numel() * 4 for v in a.values())}))


def measure(d: Path, scope: str, k: float, base: bool):
    import torch
    from vlmerge.core import open_checkpoint
    from vlmerge.metrics.distance import compare_models, summarize
    t = time.perf_counter()  # compile the fused kernels, or load them from numba's cache (on a tiny tensor)
    tiny = {'x': torch.randn(70000)}
    compare_models(tiny, {'x': tiny['x'] + 1}, k=k, scope=scope, base={'x': tiny['x'] * 0} if base else None)
    warm = time.perf_counter() - t
    rss0, anon0, peak, stop = _status('VmRSS'), _status('RssAnon'), [0.], []
    def sample():
        while not stop: peak[0] = max(peak[0], _status('RssAnon')); time.sleep(0.002)
    th = threading.Thread(target=sample, daemon=True); th.start()
    t, c = time.perf_counter(), time.process_time()
    recs = compare_models(open_checkpoint(d/'a.safetensors'), open_checkpoint(d/'b.safetensors'), k=k, scope=scope,
                          base=open_checkpoint(d/'w0.safetensors') if base else None)
    row = summarize(recs, by=())[0]
    dt, dc = time.perf_counter() - t, time.process_time() - c
    stop.append(1); th.join(); peak[0] = max(peak[0], _status('RssAnon'))
    print(json.dumps({'scope': scope, 'base': base, 'seconds': dt, 'cpu_seconds': dc, 'warmup_seconds': warm,
                      'peak_rss_above_mib': _status('VmHWM') - rss0, 'peak_anon_above_mib': peak[0] - anon0, 'rss_after_imports_mib': rss0,
                      'coords': row['n'], **{m: row[m] for m in ('l2', 'cos', 'ssd', 'tssd')}, 'tssd_n': row['tssd_n']}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--dir', help='where to write the models (default: a temporary folder, removed)')
    p.add_argument('--keep', action='store_true', help='write the models straight into --dir and keep them (reused when present)')
    p.add_argument('--k', type=float, default=10.)
    p.add_argument('--phase', choices=('make', 'tensor', 'global'), help=argparse.SUPPRESS)
    p.add_argument('--base', action='store_true', help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.phase == 'make': return make(Path(a.dir))
    if a.phase: return measure(Path(a.dir), a.phase, a.k, a.base)
    import torch
    if a.keep and not a.dir: p.error('--keep needs --dir')
    if a.keep: Path(a.dir).mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory(dir=a.dir) if not a.keep else _Keep(a.dir)) as d:
        def run(ph, *extra):
            r = subprocess.run([sys.executable, __file__, '--phase', ph, '--dir', d, '--k', str(a.k), *extra], capture_output=True, text=True)
            if r.returncode: sys.exit(r.stderr)
            return json.loads(r.stdout.strip().splitlines()[-1])
        info = run('make')
        print(f"two models and a W0 of {info['params']/1e6:.1f}M fp32 parameters ({info['bytes_each']/2**20:.0f} MiB each); "
              f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, k={a.k:g}%")
        print(f"{'scope':7s}{'vs':5s}{'wall s':>8s}{'cpu s':>7s}{'warm-up s':>10s}{'peak RSS +MiB':>14s}{'peak anon +MiB':>15s}"
              f"  {'l2':>16s} {'cos':>16s} {'ssd':>16s} {'tssd':>16s} {'tssd_n':>10s}")
        for base in (False, True):
            for scope in ('tensor', 'global'):
                r = run(scope, *(['--base'] if base else []))
                print(f"{scope:7s}{'W0' if base else 'raw':5s}{r['seconds']:8.2f}{r['cpu_seconds']:7.2f}{r['warmup_seconds']:10.2f}"
                      f"{r['peak_rss_above_mib']:14.0f}{r['peak_anon_above_mib']:15.0f}  "
                      + ' '.join(f"{r[m]:16.10g}" for m in ('l2', 'cos', 'ssd', 'tssd')) + f" {r['tssd_n']:10d}")


class _Keep:
    def __init__(self, d): self.d = d
    def __enter__(self): return self.d
    def __exit__(self, *a): pass


if __name__ == '__main__': main()
