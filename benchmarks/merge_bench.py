"""Benchmark of `vlmerge merge` (not a test): three fine-tuned fp32 models plus a base, merged with linear, task
arithmetic, TIES (per-tensor and whole-model trimming), DARE and RegMean, and with the 2024–2025 methods of
`vlmerge.merge.modern` (`--methods modern`: DELLA, SCE, Karcher, multi-SLERP, NuSLERP, nearswap, MagMax, TSV-M, Iso-C,
Iso-CTS, WUDI, RegMean++), each in a fresh process.

    .venv/bin/python benchmarks/merge_bench.py [--size 110M|551M] [--dir benchmarks/out] [--threads 2] [--methods linear,ties,modern] [--unmap-freed] [--clean]

Prints, per method: wall time from process start to the end of the merge, the part of it spent after `import torch`, peak
resident anonymous memory (RssAnon, sampled every 2 ms), absolute and above the baseline of a process that has only
imported torch, the largest tensor's size for scale, and a digest of the merged tensors (equal digests: bitwise equal results, e.g. before and after a change,
with PYTHONPATH pointing at either). The models (BERT-base shapes: 110M parameters, 440 MB each; or 551M: width 1024,
41 layers, MLP 4096, vocabulary 32128, 2.2 GB each) and the RegMean Gram matrices are generated once under
--dir/SIZE (about 5 GB for 110M, 29 GB for 551M) and reused; --clean deletes them (and the merged outputs) at the end.
--unmap-freed runs the merges with VLMERGE_UNMAP_FREED=1 (glibc unmaps freed blocks of 1 MiB or more; see merge.engine)."""
import argparse, json, os, shutil, subprocess, sys, threading, time
from pathlib import Path

T0 = time.time()
ROOT = Path(__file__).resolve().parents[1]


def _rss_anon():
    for l in open('/proc/self/status'):
        if l.startswith('RssAnon:'): return int(l.split()[1]) * 1024
    return 0


class PeakSampler(threading.Thread):
    "Sample this process's RssAnon every `dt` seconds; `.peak` is the largest value seen."
    def __init__(self, dt=0.002):
        super().__init__(daemon=True); self.dt, self.peak, self.stop = dt, _rss_anon(), False
    def run(self):
        while not self.stop: self.peak = max(self.peak, _rss_anon()); time.sleep(self.dt)
    def finish(self):
        self.stop = True; self.join(); self.peak = max(self.peak, _rss_anon()); return self.peak


def shapes(width=768, depth=12, mlp=3072, vocab=30522, positions=512):
    "BERT-base-like tensor shapes (110M parameters)."
    s = {'embeddings.word.weight': (vocab, width), 'embeddings.position.weight': (positions, width),
         'embeddings.type.weight': (2, width), 'embeddings.norm.weight': (width,), 'embeddings.norm.bias': (width,)}
    for i in range(depth):
        p = f'encoder.layers.{i}.'
        s |= {p + 'attn.qkv.weight': (3 * width, width), p + 'attn.qkv.bias': (3 * width,), p + 'attn.proj.weight': (width, width),
              p + 'attn.proj.bias': (width,), p + 'norm1.weight': (width,), p + 'norm1.bias': (width,),
              p + 'mlp.fc1.weight': (mlp, width), p + 'mlp.fc1.bias': (mlp,), p + 'mlp.fc2.weight': (width, mlp),
              p + 'mlp.fc2.bias': (width,), p + 'norm2.weight': (width,), p + 'norm2.bias': (width,)}
    return s | {'pooler.weight': (width, width), 'pooler.bias': (width,)}


SIZES = {'110M': {}, '551M': dict(width=1024, depth=41, mlp=4096, vocab=32128)}


def generate(d:Path, size='110M'):
    "Write base + three fine-tuned models (base + small noise) and Gram matrices for their linear layers."
    import torch
    from vlmerge.core import save_sharded, ShardWriter
    sh = shapes(**SIZES[size])
    n = sum(torch.Size(s).numel() for s in sh.values())
    done = all((d/x/'model.safetensors.index.json').exists() for x in ('base', 'a', 'b', 'c', 'grams_a', 'grams_b', 'grams_c'))
    if done: return n
    g = torch.Generator().manual_seed(0)
    base = {k: torch.randn(s, generator=g) * 0.02 for k, s in sh.items()}
    if not (d/'base'/'model.safetensors.index.json').exists(): save_sharded(base, d/'base', max_shard_bytes=2**30)
    for i, name in enumerate('abc'):
        if (d/name/'model.safetensors.index.json').exists(): continue
        ft = {k: v + torch.randn(v.shape, generator=g) * 0.002 for k, v in base.items()}
        save_sharded(ft, d/name, max_shard_bytes=2**30); del ft
    del base
    for name in 'abc':
        p = d/f'grams_{name}'
        if (p/'model.safetensors.index.json').exists(): continue
        lin = {k: s for k, s in sh.items() if len(s) == 2 and not k.startswith('embeddings')}
        with ShardWriter(p, [(k, (s[1], s[1]), torch.float64) for k, s in lin.items()], max_shard_bytes=2**30) as w:  # one Gram at a time: at 551M they are 6.5 GB per model
            for k, s in lin.items():
                A = torch.randn(s[1], 32, generator=g, dtype=torch.float64)
                w.write(k, A @ A.T + s[1] * torch.eye(s[1], dtype=torch.float64))
    return n


def configs(d:Path, threads):
    m = [f'{d}/{n}' for n in 'abc']
    return {
        'linear': {'merge_method': 'linear', 'models': [{'model': x} for x in m]},
        'task_arithmetic': {'merge_method': 'task_arithmetic', 'base_model': f'{d}/base', 'parameters': {'lambda': 0.75},
                            'models': [{'model': x} for x in m]},
        'ties': {'merge_method': 'ties', 'base_model': f'{d}/base', 'parameters': {'density': 0.2},
                 'models': [{'model': x} for x in m]},
        'ties_model': {'merge_method': 'ties', 'base_model': f'{d}/base', 'parameters': {'density': 0.2, 'trim_scope': 'model'},
                       'models': [{'model': x} for x in m]},
        'dare_ties': {'merge_method': 'dare_ties', 'base_model': f'{d}/base', 'parameters': {'density': 0.2, 'seed': 0},
                      'models': [{'model': x} for x in m]},
        'regmean': {'merge_method': 'regmean', 'models': [{'model': x, 'statistics': f'{d}/grams_{n}'} for x, n in zip(m, 'abc')]},
    }


# The 2024–2025 methods (issue 17, vlmerge.merge.modern), selected with --methods (e.g. --methods modern for all):
# each a mergekit / FusionBench config as a user would write it. WUDI runs `iter_num` Adam steps per matrix, each one
# (out × in)·(in × in) product; the benchmark runs 5 and its cost grows linearly with the steps (FusionBench uses 300).
MODERN = ('della', 'della_linear', 'sce', 'karcher', 'multislerp', 'nuslerp', 'nearswap', 'magmax', 'tsv', 'iso_c', 'iso_cts',
          'wudi', 'regmean_plusplus')


def modern_configs(d:Path):
    m = [f'{d}/{n}' for n in 'abc']
    ms = [{'model': x} for x in m]
    with_base = lambda method, params, models=ms: {'merge_method': method, 'base_model': f'{d}/base', 'parameters': params, 'models': models}
    return {
        'della': with_base('della', {'density': 0.5, 'epsilon': 0.1, 'lambda': 1.0}),
        'della_linear': with_base('della_linear', {'density': 0.5, 'epsilon': 0.1, 'lambda': 1.0}),
        'sce': with_base('sce', {'select_topk': 0.5}),
        'karcher': {'merge_method': 'karcher', 'models': ms},
        'multislerp': with_base('multislerp', {}, [{'model': x, 'parameters': {'weight': 1.0}} for x in m]),
        'nuslerp': with_base('nuslerp', {}, [{'model': x, 'parameters': {'weight': 1.0}} for x in m[:2]]),
        'nearswap': with_base('nearswap', {'t': 0.001}, ms[:1]),
        'magmax': with_base('magmax', {'scaling_factor': 1.0}),
        'tsv': with_base('tsv', {'alpha': 1.0}),
        'iso_c': with_base('iso_c', {'scaling_factor': 1.0}),
        'iso_cts': with_base('iso_cts', {'scaling_factor': 1.0, 'common_space_fraction': 0.8}),
        'wudi': with_base('wudi', {'iter_num': 5}),
        'regmean_plusplus': {'merge_method': 'regmean_plusplus', 'parameters': {'reduce_non_diagonal_ratio': 1.0},
                             'models': [{'model': x, 'statistics': f'{d}/grams_{n}'} for x, n in zip(m, 'abc')]},
    }


def child(method, cfg_path, out, threads):
    "Runs in a fresh process: sample memory, import, merge, report."
    s = PeakSampler(); s.start()
    import torch
    t_import = time.time()
    base = _rss_anon()
    from vlmerge.merge.config import merge_command
    merge_command([cfg_path, '--out', out, '--no-progress', '--threads', str(threads)])
    peak = s.finish(); end = time.time()
    print(json.dumps({'peak': peak, 'after_import_s': end - t_import, 'end': end, 'rss_after_torch': base, 'digest': digest(out)}))


def digest(out):
    "SHA-256 over the merged tensors in key order (names, dtypes, shapes, bytes): equal digests, bitwise equal merges."
    import hashlib
    from vlmerge.core import open_checkpoint
    r, h = open_checkpoint(out), hashlib.sha256()
    for k in sorted(r.keys()):
        t = r.get(k); h.update(f'{k}:{t.dtype}:{tuple(t.shape)}'.encode()); h.update(t.contiguous().view(-1).view(torch_u8()).numpy().tobytes())
    return h.hexdigest()[:16]


def torch_numel(shape):
    import math
    return math.prod(shape)


def torch_u8():
    import torch
    return torch.uint8


def baseline():
    s = PeakSampler(); s.start()
    import torch
    time.sleep(0.2)
    print(json.dumps({'peak': s.finish()}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--dir', default=str(ROOT/'benchmarks'/'out'))
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--methods', default='linear,task_arithmetic,ties,ties_model,dare_ties,regmean')
    ap.add_argument('--size', choices=sorted(SIZES), default='110M')
    ap.add_argument('--clean', action='store_true', help='delete the generated models and merged outputs at the end')
    ap.add_argument('--repeat', type=int, default=1, help='runs per method (the fastest is reported)')
    ap.add_argument('--unmap-freed', action='store_true', help='merge with VLMERGE_UNMAP_FREED=1 (process-wide glibc setting)')
    a = ap.parse_args()
    d = Path(a.dir)/a.size; d.mkdir(parents=True, exist_ok=True)
    t = time.time(); n = generate(d, a.size); print(f"models ready under {d} ({n/1e6:.1f}M parameters each, {time.time()-t:.0f} s)")
    py = sys.executable
    b = json.loads(subprocess.run([py, __file__, '_baseline'], capture_output=True, text=True, check=True).stdout)['peak']
    big = max(torch_numel(s) for s in shapes(**SIZES[a.size]).values()) * 4
    print(f"baseline (only `import torch`): RssAnon peak {b/2**20:.0f} MiB; {os.cpu_count()} cores, {a.threads} merge threads; "
          f"largest tensor {big/2**20:.0f} MiB (fp32); VLMERGE_UNMAP_FREED={'1' if a.unmap_freed else 'unset'}")
    env = {k: v for k, v in os.environ.items() if k != 'VLMERGE_UNMAP_FREED'} | ({'VLMERGE_UNMAP_FREED': '1'} if a.unmap_freed else {})
    print(f"{'method':18s}{'wall s':>9s}{'after import s':>16s}{'peak RssAnon MiB':>18s}{'above baseline MiB':>20s}  digest")
    import yaml
    chosen = [x for w in a.methods.split(',') for x in (MODERN if w == 'modern' else (w,))]
    for m, cfg in (configs(d, a.threads) | modern_configs(d)).items():
        if m not in chosen: continue
        cp = d/f'{m}.yaml'; cp.write_text(yaml.safe_dump(cfg))
        best = None
        for _ in range(a.repeat):
            t = time.time()
            r = subprocess.run([py, __file__, '_child', m, str(cp), str(d/f'merged_{m}'), str(a.threads)], capture_output=True, text=True, env=env)
            if r.returncode: print(r.stderr); sys.exit(r.returncode)
            res = json.loads(r.stdout.strip().splitlines()[-1])
            res['wall'] = res['end'] - t  # the digest, computed after, is not timed
            if best is None or res['wall'] < best['wall']: best = res
        print(f"{m:18s}{best['wall']:9.2f}{best['after_import_s']:16.2f}{best['peak']/2**20:18.0f}{(best['peak']-b)/2**20:20.0f}  {best['digest']}", flush=True)
        if a.clean: shutil.rmtree(d/f'merged_{m}', ignore_errors=True)
    if a.clean: shutil.rmtree(d); print(f"removed {d}")


if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '_child': child(*sys.argv[2:5], int(sys.argv[5]))
    elif len(sys.argv) > 1 and sys.argv[1] == '_baseline': baseline()
    else: main()
