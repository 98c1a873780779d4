"""Generation speed and on-disk size of the built-in world (vlmerge.data.world).

    .venv/bin/python benchmarks/data_world.py [--size demo] [--image-size 32 64] [--seed 0]

Builds each world into a fresh temporary folder (the cache is not touched) and prints, per task and
in total, the number of examples, examples per second and the size on disk.
"""
import argparse, json, tempfile, time
from pathlib import Path
from vlmerge.data.world import build_world, TASKS


def du(p: Path) -> int: return sum(f.stat().st_size for f in p.rglob('*') if f.is_file())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--size', default='demo'); ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--image-size', type=int, nargs='+', default=[32, 64])
    a = ap.parse_args(argv)
    for S in a.image_size:
        with tempfile.TemporaryDirectory() as tmp:
            rows = []
            for task in TASKS:
                t0, c0 = time.perf_counter(), time.process_time()
                p = build_world(a.seed, a.size, S, Path(tmp)/task, tasks=(task,))
                dt, cpu = time.perf_counter() - t0, time.process_time() - c0
                n = sum(json.loads((p/'world.json').read_text())['tasks'][task].values())
                rows.append((task, n, dt, du(p/task), cpu))
            print(f"\nworld size={a.size} image_size={S}px seed={a.seed}")
            print(f"{'task':<15}{'examples':>9}{'wall s':>9}{'ex/s':>9}{'cpu s':>9}{'MiB':>8}")
            for t, n, dt, b, c in rows: print(f"{t:<15}{n:>9}{dt:>9.2f}{n/dt:>9.0f}{c:>9.2f}{b/2**20:>8.1f}")
            N, T, B, C = (sum(r[i] for r in rows) for i in (1, 2, 3, 4))
            print(f"{'total':<15}{N:>9}{T:>9.2f}{N/T:>9.0f}{C:>9.2f}{B/2**20:>8.1f}")


if __name__ == '__main__': main()
