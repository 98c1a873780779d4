"""Time and score a fine-tuning run of every downstream task from a random tiny model on the built-in world.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/finetune_bench.py [--size tiny] [--epochs 10] [--variant agnostic]
"""
import argparse, json, tempfile, time
from pathlib import Path
import torch
from vlmerge.core import from_dict, set_seed
from vlmerge.models.config import preset
from vlmerge.models.transformer import VLTransformer
from vlmerge.pretrain.objectives import PretrainHeads
from vlmerge.pretrain.recipe import save_model
from vlmerge.evaluate import TaskData, task_tokenizer
from vlmerge.finetune import FinetuneConfig, run_finetune
from vlmerge.heads import TASKS

p = argparse.ArgumentParser()
p.add_argument('--size', default='tiny'); p.add_argument('--epochs', type=float, default=None)
p.add_argument('--variant', default='agnostic'); p.add_argument('--tasks', default=','.join(TASKS))
a = p.parse_args()
torch.set_num_threads(1)
tmp = Path(tempfile.mkdtemp())
tok = task_tokenizer(TaskData(size=a.size))
set_seed(0); bb = VLTransformer(preset('tiny', variant=a.variant, vocab_size=len(tok)))
save_model(tmp/'m', bb, PretrainHeads(bb.cfg))
for t in a.tasks.split(','):
    t0 = time.perf_counter()
    cfg = {'task': t, 'model': str(tmp/'m'), 'data': {'size': a.size}, **({'epochs': a.epochs} if a.epochs else {})}
    s = run_finetune(from_dict(FinetuneConfig, cfg), tmp/t)
    r = json.loads((tmp/t/'results.json').read_text())
    print(f"{t:15s} steps {r['steps']:4d}  train {r['train_seconds']:5.2f} s  eval {r['eval_seconds']:4.2f} s  "
          f"run {time.perf_counter() - t0:5.2f} s ", {k: round(v, 3) for k, v in s.items()}, flush=True)
