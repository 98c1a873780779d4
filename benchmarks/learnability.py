"""Learnability experiments (issue 13): pre-train the demo's modality-agnostic baseline (or reuse one), fine-tune it on
the downstream tasks, and print each score beside the task's floors (`vlmerge.floors`) on the same test split.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/learnability.py --name base --seed 0 [--size demo] [--image-size 32]
        [--patch 8] [--model-set '{"vl_layers": 2}'] [--pretrain-steps 600] [--steps 50] [--task-steps '{"vqa": 400}'] [--task-set '{"nlvr2": {"batch_size": 16}}']
        [--tasks vqa,nlvr2] [--pretrained FOLDER] [--out /tmp/learnability]

One change at a time against `--name base` is the design: each run appends one JSON line (scores, floors, seconds per
step) to OUT/results.jsonl, which nbs/experiments/22_learnability.ipynb tabulates. Model and pre-training settings are the
demo's (`vlmerge.study.DEMO`) unless overridden here.
"""
import argparse, json, time
from pathlib import Path
from vlmerge.core import from_dict
from vlmerge.study import DEMO, MAIN_METRIC
from vlmerge.pretrain.recipe import PretrainConfig, run_pretrain
from vlmerge.finetune import FinetuneConfig, run_finetune
from vlmerge.evaluate import TaskData
from vlmerge.floors import data_floors


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--name', required=True, help='the experiment (its folder under --out)')
    p.add_argument('--out', default='/tmp/learnability'); p.add_argument('--seed', type=int, default=0)
    p.add_argument('--size', default=DEMO['data']['size']); p.add_argument('--image-size', type=int, default=DEMO['data']['image_size'])
    p.add_argument('--patch', type=int, default=8); p.add_argument('--pretrain-steps', type=int, default=max(DEMO['k_seed']) + DEMO['steps'])
    p.add_argument('--model-set', default='{}', help='JSON VLConfig overrides over the demo model, e.g. {"vl_layers": 2}')
    p.add_argument('--pretrained', help='fine-tune this model folder instead of pre-training one')
    p.add_argument('--tasks', default=','.join(MAIN_METRIC)); p.add_argument('--steps', type=int, default=DEMO['finetune']['train']['steps'])
    p.add_argument('--task-steps', default='{}', help='JSON {task: fine-tuning steps}')
    p.add_argument('--task-set', default='{}', help='JSON {task: TrainConfig overrides}, e.g. {"nlvr2": {"batch_size": 16}}')
    a = p.parse_args(argv)
    root = Path(a.out)/a.name/f's{a.seed}'
    data = {**DEMO['data'], 'size': a.size, 'image_size': a.image_size}
    t0 = time.perf_counter()
    if a.pretrained: model = Path(a.pretrained); pre_s = 0.0
    else:
        pc = from_dict(PretrainConfig, {'model': {**DEMO['model'], 'patch_size': a.patch, **json.loads(a.model_set)}, 'data': data, 'objectives': DEMO['objectives'],
                                        'stage': 'agnostic', 'train': {**DEMO['pretrain'], 'steps': a.pretrain_steps, 'seed': a.seed, 'ckpt_every': 0}},
                       'learnability')
        model = run_pretrain(pc, root/'pretrain', resume=True); pre_s = time.perf_counter() - t0
    tasks = a.tasks.split(','); dc = TaskData(size=a.size, seed=data['seed'], image_size=a.image_size)
    floors = data_floors(dc, tuple(tasks))
    steps, sets = json.loads(a.task_steps), json.loads(a.task_set)
    row = {'name': a.name, 'seed': a.seed, 'size': a.size, 'image_size': a.image_size, 'patch': a.patch, 'pretrained': str(model), 'model_set': json.loads(a.model_set),
           'pretrain_steps': 0 if a.pretrained else a.pretrain_steps, 'pretrain_s': round(pre_s, 1), 'tasks': {}}
    for t in tasks:
        tr = {**DEMO['finetune'].get('train', {}), 'steps': steps.get(t, a.steps), 'seed': a.seed, **sets.get(t, {})}
        cfg = from_dict(FinetuneConfig, {'task': t, 'model': str(model), 'data': {k: data[k] for k in ('size', 'seed', 'image_size')},
                                         'train': tr}, 'learnability')
        scores = run_finetune(cfg, root/'finetune'/t, resume=True)
        res = json.loads((root/'finetune'/t/'results.json').read_text())
        m = MAIN_METRIC[t]
        row['tasks'][t] = {'metric': m, 'score': scores[m], 'floors': {k: v[m] for k, v in floors[t].items()}, 'steps': res['steps'],
                           'batch_size': res['batch_size'], 'train_s': res['train_seconds'], 'eval_s': res['eval_seconds']}
        print(f"{a.name} s{a.seed} {t:15s} {m} {scores[m]:.3f}  floors", {k: round(v, 3) for k, v in row['tasks'][t]['floors'].items()},
              f"{res['steps']} steps x {res['batch_size']} in {res['train_seconds']:.0f} s", flush=True)
    with open(Path(a.out)/'results.jsonl', 'a') as f: f.write(json.dumps(row) + '\n')


if __name__ == '__main__': main()
