"""A toy run of vlmerge.train, launched as a script by tests/test_train.py (alone, under torchrun, or killed).

    python tests/train_toy.py OUT_DIR [--steps N] [--ckpt-every N] [--resume] [--sleep S] [--dropout P]"""
import argparse, time, torch, torch.nn as nn
from vlmerge.train import TrainConfig, train

ap = argparse.ArgumentParser()
ap.add_argument('out'); ap.add_argument('--steps', type=int, default=40); ap.add_argument('--ckpt-every', type=int, default=0)
ap.add_argument('--resume', action='store_true'); ap.add_argument('--sleep', type=float, default=0.0)
ap.add_argument('--dropout', type=float, default=0.0); ap.add_argument('--grad-accum', type=int, default=1)
a = ap.parse_args()

g = torch.Generator().manual_seed(0); w = torch.randn(8, 1, generator=g)
data = [(x, x @ w) for x in torch.randn(512, 8, generator=g)]
collate = lambda exs: {'x': torch.stack([e[0] for e in exs]), 'y': torch.stack([e[1] for e in exs])}

def loss_fn(model, b):
    if a.sleep: time.sleep(a.sleep)            # slow steps, so that a test can kill the run mid-way
    return ((model(b['x']) - b['y'])**2).mean(), {}

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 32), nn.Dropout(a.dropout), nn.Tanh(), nn.Linear(32, 1))
cfg = TrainConfig(steps=a.steps, batch_size=32, grad_accum=a.grad_accum, lr=1e-2, warmup=3, ckpt_every=a.ckpt_every,
                  log_every=1, device='cpu')
train(model, loss_fn, data, collate, cfg, a.out, resume=a.resume, progress=False)
