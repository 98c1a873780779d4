"""Pre-training throughput: samples/s and peak memory of ITC + ITM + MLM training steps.

    python benchmarks/pretrain_bench.py [--presets tiny small] [--variant specific] [--batch 32] [--steps 5]

On CPU it reports samples/s and peak resident memory (VmHWM). On a CUDA GPU it also runs `base` in bf16 and
reports model FLOPs utilisation (MFU): achieved training FLOPs (6 x parameters used per token x tokens/s, plus
attention) over the GPU's peak bf16 rate (--peak-tflops, default 989 for an H100 SXM)."""
import argparse, os, re, time
import torch
from vlmerge.models.config import preset
from vlmerge.models.transformer import VLTransformer
from vlmerge.pretrain.objectives import PretrainModel, pretrain_loss


def peak_rss_mib():
    txt = open('/proc/self/status').read()
    return int(re.search(r'VmHWM:\s+(\d+)', txt).group(1)) / 1024


def batch(cfg, B, device):
    g = torch.Generator().manual_seed(0); T = min(cfg.max_text_len, 40)
    ids = torch.randint(5, cfg.vocab_size, (B, T), generator=g); ids[:, 0] = 2
    lab = torch.full_like(ids, -100); lab[:, 1:T // 4] = ids[:, 1:T // 4]
    mlm = ids.clone(); mlm[:, 1:T // 4] = 4
    b = {'pixel_values': torch.randn(B, 3, cfg.image_size, cfg.image_size, generator=g), 'input_ids': ids,
         'attention_mask': torch.ones_like(ids), 'mlm_input_ids': mlm, 'mlm_labels': lab}
    return {k: v.to(device) for k, v in b.items()}


def flops_per_step(cfg, B, T):
    "Approximate training FLOPs of one step: 6 N tokens over every path a token takes, plus attention scores."
    D, L, Hm = cfg.width, cfg.depth, cfg.mlp_width
    per_tok_block = 2 * (3 * D * D + D * D + 2 * D * Hm)               # forward matmuls of one block per token
    Ni = cfg.n_image_tokens
    # V path and L path through every block, ITM's 3B fused pairs and MLM's fused pass through the top blocks,
    # the VL-single reruns (ITC b) through the top blocks
    tok_blocks = B * (Ni + T) * L + (3 * B + B) * (Ni + T) * cfg.vl_layers + B * (Ni + T) * cfg.vl_layers + B * T * cfg.n_lower
    attn = 4 * D * (B * (Ni**2 + T**2) * L + 4 * B * (Ni + T)**2 * cfg.vl_layers)
    return 3 * (per_tok_block * tok_blocks + attn)                        # forward + backward (2x)


def run(name, variant, B, steps, device, dtype):
    cfg = preset(name, variant=variant, drop_path_rate=0.0)
    torch.manual_seed(0)
    pm = PretrainModel(VLTransformer(cfg)).to(device)
    opt = torch.optim.AdamW(pm.parameters(), lr=1e-4)
    b = batch(cfg, B, device)
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if dtype == 'bf16' else torch.autocast(device.type, enabled=False)
    def step():
        with ctx: loss, _ = pretrain_loss(pm, b)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    step()
    if device.type == 'cuda': torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(steps): step()
    if device.type == 'cuda': torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    out = {'preset': name, 'variant': variant, 'device': device.type, 'dtype': dtype, 'batch': B,
           'params_M': round(sum(p.numel() for p in pm.parameters()) / 1e6, 1), 's_per_step': round(dt, 3),
           'samples_per_s': round(B / dt, 1), 'peak_rss_MiB': round(peak_rss_mib())}
    if device.type == 'cuda':
        out['peak_gpu_MiB'] = round(torch.cuda.max_memory_allocated() / 2**20)
        out['tflops'] = round(flops_per_step(cfg, B, min(cfg.max_text_len, 40)) / dt / 1e12, 1)
    return out


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--presets', nargs='*', default=['tiny', 'small'])
    ap.add_argument('--variant', default='specific')
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--peak-tflops', type=float, default=989.0)
    a = ap.parse_args()
    for name in a.presets:
        print(run(name, a.variant, a.batch if name == 'tiny' else min(a.batch, 8), a.steps, torch.device('cpu'), 'fp32'), flush=True)
    if torch.cuda.is_available():
        r = run('base', a.variant, 128, a.steps, torch.device('cuda'), 'bf16')
        r['mfu'] = round(r['tflops'] / a.peak_tflops, 3); print(r, flush=True)
    else:
        print('no CUDA device: the base/bf16 MFU figure needs a GPU')
