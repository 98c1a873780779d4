"""Benchmark (not a test): all four distance metrics (L2, cosine, SSD, TSSD) streamed over two 110M-parameter fp32
models stored as safetensors; wall time and peak RSS.

    .venv/bin/python benchmarks/metrics_bench.py [--dir TMPDIR] [--k 10]

The two models have BERT-base shapes in vlmerge key style (embeddings 23.8M + 12 blocks of 7.1M + pooler), model B =
model A + 1% noise. Each measurement runs in a fresh process that opens both checkpoints lazily, so its peak RSS
(VmHWM from /proc/self/status) is that of the streaming computation itself (plus the imports, reported separately)."""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path


def _status(field):
    for line in open('/proc/self/status'):
        if line.startswith(field + ':'): return int(line.split()[1]) / 1024  # MiB
    return float('nan')


def make(d: Path):
    import torch
    from vlmerge.core import save_sd, sd_numel
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
    b = {k: v + 0.01 * v.std() * torch.randn(v.shape, generator=g) for k, v in a.items()}  # 1% noise
    save_sd(b, d/'b.safetensors')
    print(json.dumps({'params': sd_numel(a), 'bytes_each': sum(v.numel() * 4 for v in a.values())}))


def measure(d: Path, scope: str, k: float):
    from vlmerge.core import open_checkpoint
    from vlmerge.metrics.distance import compare_models, summarize
    rss0 = _status('VmRSS')
    t = time.perf_counter()
    recs = compare_models(open_checkpoint(d/'a.safetensors'), open_checkpoint(d/'b.safetensors'), k=k, scope=scope)
    row = summarize(recs, by=())[0]
    dt = time.perf_counter() - t
    print(json.dumps({'scope': scope, 'seconds': dt, 'peak_rss_mib': _status('VmHWM'), 'rss_after_imports_mib': rss0,
                      'rss_anon_end_mib': _status('RssAnon'), 'rss_file_end_mib': _status('RssFile'),
                      'coords': row['n'], **{m: row[m] for m in ('l2', 'cos', 'ssd', 'tssd')}}))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--dir', help='where to write the two models (default: a temporary folder, removed)')
    p.add_argument('--k', type=float, default=10.)
    p.add_argument('--phase', choices=('make', 'tensor', 'global'), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.phase == 'make': return make(Path(a.dir))
    if a.phase: return measure(Path(a.dir), a.phase, a.k)
    import torch
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        run = lambda ph: json.loads(subprocess.run([sys.executable, __file__, '--phase', ph, '--dir', d, '--k', str(a.k)],
                                                   check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        info = run('make')
        print(f"two models of {info['params']/1e6:.1f}M fp32 parameters ({info['bytes_each']/2**20:.0f} MiB each); "
              f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads")
        for scope in ('tensor', 'global'):
            r = run(scope)
            print(f"scope={scope:<6} k={a.k:g}%: {r['seconds']:.1f} s wall, peak RSS {r['peak_rss_mib']:.0f} MiB "
                  f"(after imports {r['rss_after_imports_mib']:.0f} MiB; at the end {r['rss_file_end_mib']:.0f} MiB of it mapped checkpoint pages, "
                  f"{r['rss_anon_end_mib']:.0f} MiB anonymous); {r['coords']/1e6:.1f}M coordinates; "
                  f"l2 {r['l2']:.3g} cos {r['cos']:.3g} ssd {r['ssd']:.3g} tssd {r['tssd']:.3g}")


if __name__ == '__main__': main()
