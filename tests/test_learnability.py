"""(slow, VLMERGE_SLOW=1) Every demo task is learnable from the images: the modality-agnostic baseline, pre-trained and
fine-tuned at the demo's budget, beats each task's highest floor (`vlmerge.floors`) by the margins of issue 13, as a mean
over 3 seeds. The experiments behind the settings are in nbs/experiments/22_learnability.ipynb."""
import json, os, time
from pathlib import Path
import numpy as np, pytest, torch

SLOW = pytest.mark.skipif(not os.environ.get('VLMERGE_SLOW'), reason='slow: set VLMERGE_SLOW=1')
MAIN = {'vqa': 'vqa_score', 'nlvr2': 'acc', 'retrieval': 'r_mean', 'classification': 'top1', 'segmentation': 'miou'}
SEEDS = [int(s) for s in os.environ.get('VLMERGE_SLOW_SEEDS', '0,1,2').split(',')]


def _need(task, floors):
    "The score the baseline must beat: issue 13's margin over the task's highest floor (NLVR2's 0.65 is tested apart)."
    f = {k: v[MAIN[task]] for k, v in floors.items()}
    if task in ('nlvr2', 'vqa'): return max(f.values()) + 0.05
    if task == 'segmentation': return 1.5 * f['constant']
    return 2 * f['chance']


def _baseline(tmp, seed):
    "Pre-train the demo's modality-agnostic baseline and fine-tune it on each task: {task: scores}, and the seconds spent."
    from vlmerge.core import from_dict
    from vlmerge.study import DEMO, StudyConfig, task_finetune
    from vlmerge.pretrain.recipe import PretrainConfig, run_pretrain
    from vlmerge.finetune import FinetuneConfig, run_finetune
    data, demo = DEMO['data'], from_dict(StudyConfig, DEMO)   # the demo's world and fine-tuning budget, task by task
    steps = max(DEMO['k_seed']) + DEMO['steps']   # the baseline is pre-trained as long as the merged models in all
    t0 = time.perf_counter()
    pc = from_dict(PretrainConfig, {'model': DEMO['model'], 'data': data, 'objectives': DEMO['objectives'], 'stage': 'agnostic',
                                    'train': {**DEMO['pretrain'], 'steps': steps, 'seed': seed, 'ckpt_every': 0}}, 'learnability')
    model = run_pretrain(pc, tmp/f's{seed}'/'pre')
    secs = {'pretrain': time.perf_counter() - t0}; out = {}
    for task in MAIN:
        t1 = time.perf_counter()
        tr = {**task_finetune(demo, task)['train'], 'seed': seed}
        cfg = {'task': task, 'model': str(model), 'data': {k: data[k] for k in ('size', 'seed', 'image_size')}, 'train': tr}
        out[task] = run_finetune(from_dict(FinetuneConfig, cfg, 'learnability'), tmp/f's{seed}'/task)
        secs[task] = time.perf_counter() - t1
    return out, secs


@pytest.fixture(scope='module')
def measured(tmp_path_factory):
    "Floors of the demo's world and the baseline's scores over SEEDS: (floors, {task: mean main score}), printed as a table."
    from vlmerge.floors import data_floors
    from vlmerge.evaluate import TaskData
    from vlmerge.study import DEMO
    torch.set_num_threads(1)
    d = DEMO['data']
    floors = data_floors(TaskData(size=d['size'], seed=d['seed'], image_size=d['image_size']), tuple(MAIN))
    tmp = tmp_path_factory.mktemp('learn'); runs = [_baseline(tmp, s) for s in SEEDS]
    mean = {t: float(np.mean([r[0][t][MAIN[t]] for r in runs])) for t in MAIN}
    print('\npre-training seconds/seed', round(float(np.mean([r[1]['pretrain'] for r in runs]))))
    for t in MAIN:
        print(f"{t:15s} {MAIN[t]:9s} mean {mean[t]:.3f} over seeds {SEEDS}  need {_need(t, floors[t]):.3f}  floors "
              + json.dumps({k: round(v[MAIN[t]], 3) for k, v in floors[t].items()}) + f"  seconds/seed {np.mean([r[1][t] for r in runs]):.0f}")
    return floors, mean


@SLOW
def test_every_task_beats_its_highest_floor(measured):
    "VQA and NLVR2 >= highest floor + 0.05, segmentation >= 1.5x all-background, retrieval and classification >= 2x chance."
    floors, mean = measured
    bad = {t: (round(mean[t], 3), round(_need(t, floors[t]), 3)) for t in MAIN if not mean[t] >= _need(t, floors[t])}
    assert not bad, bad


@SLOW
def test_nlvr2_reaches_065(measured):
    """NLVR2 >= 0.65 since ITM learns (uniform negatives): 0.678 / 0.624 / 0.656 on seeds 0-2, mean 0.653 (it was 0.597 with the study's
    hard negatives; nbs/experiments/22_learnability.ipynb, section 6). The margin is thin: a change that costs NLVR2 a point fails here."""
    assert measured[1]['nlvr2'] >= 0.65, measured[1]['nlvr2']
