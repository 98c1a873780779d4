"""Pre-training throughput: samples/s and peak memory of ITC + ITM + MLM training steps, against a plain reference.

    python benchmarks/pretrain_bench.py [--presets tiny small] [--variant specific] [--batch 32] [--steps 5] [--cpu-dry-run]

The reference step (`RefBackbone`) has the same FLOPs: timm's ViT blocks for the V and VL experts and transformers'
BERT layers for the L experts, wired through the same `PretrainModel` (the same objectives, heads and batch); the
script prints vlmerge's step time over the reference's for each preset.

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


class RefBackbone(torch.nn.Module):
    """The plain reference: timm `VisionTransformer` blocks for the V and VL experts, `transformers` BERT layers for the L
    experts, with the interface `PretrainModel` calls (so the objectives, heads and batch are the same code)."""
    def __init__(self, cfg):
        super().__init__()
        from functools import partial
        from timm.layers import PatchEmbed
        from timm.models.vision_transformer import Block as TimmBlock
        from transformers import BertConfig
        from transformers.models.bert.modeling_bert import BertEmbeddings, BertLayer
        from vlmerge.models.transformer import Pooler
        nn, D, H = torch.nn, cfg.width, int(cfg.mlp_ratio * cfg.width)
        self.cfg = cfg
        bc = BertConfig(vocab_size=cfg.vocab_size, hidden_size=D, num_attention_heads=cfg.heads, intermediate_size=H,
                        max_position_embeddings=cfg.max_text_len, type_vocab_size=2, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, hidden_act='gelu', attn_implementation='sdpa')
        self.text_embed = BertEmbeddings(bc)
        self.patch_embed = PatchEmbed(cfg.image_size, cfg.patch_size, cfg.in_chans, D)
        self.cls_token, self.pos_embed = nn.Parameter(torch.zeros(1, 1, D)), nn.Parameter(torch.zeros(1, cfg.n_image_tokens, D))
        self.type_embed = nn.Embedding(cfg.token_types, D)
        vit = lambda: TimmBlock(D, cfg.heads, cfg.mlp_ratio, qkv_bias=True, init_values=cfg.layer_scale_init or None,
                                norm_layer=partial(nn.LayerNorm, eps=cfg.norm_eps))
        self.v = nn.ModuleList(vit() for _ in range(cfg.depth))
        self.l = nn.ModuleList(BertLayer(bc) for _ in range(cfg.depth))
        self.vl = nn.ModuleList(vit() for _ in range(cfg.vl_layers))
        self.norm, self.pooler = nn.LayerNorm(D, eps=cfg.norm_eps), Pooler(D)

    def embed_image(self, image):
        x = self.patch_embed(image)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed + self.type_embed.weight[1]

    def embed_text(self, ids): return self.text_embed(input_ids=ids) + self.type_embed.weight[0]

    def _run(self, x, expert, blocks, mask=None):
        if mask is not None and bool(mask.all()): mask = None
        if mask is not None: mask = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(~mask.bool(), torch.finfo(x.dtype).min)[:, None, None, :]
        for i in blocks:
            if expert == 'l': x = self.l[i](x, attention_mask=mask)
            elif expert == 'v': x = self.v[i](x, attn_mask=mask)
            else: x = self.vl[i - self.cfg.n_lower](x, attn_mask=mask)
            if isinstance(x, tuple): x = x[0]
        return x

    def run_lower(self, x, modality, mask=None): return self._run(x, 'v' if modality == 'image' else 'l', range(self.cfg.n_lower), mask)
    def run_top(self, x, expert, mask=None): return self.norm(self._run(x, expert, range(self.cfg.n_lower, self.cfg.depth), mask))
    def vl_single(self, lower, modality, mask=None): return self.run_top(lower, 'vl', mask)

    def fuse(self, image_lower, text_lower, text_mask=None):
        x = torch.cat([text_lower, image_lower], 1)
        mask = None if text_mask is None else torch.cat([text_mask, text_mask.new_ones(image_lower.shape[:2])], 1)
        return self.run_top(x, 'vl', mask)

    def forward(self, image=None, text_ids=None, text_mask=None, paths=('v', 'l')):
        from vlmerge.models.transformer import VLOutput
        o = VLOutput(text_mask=text_mask)
        o.image_lower = self.run_lower(self.embed_image(image), 'image')
        if 'v' in paths: o.image = self.run_top(o.image_lower, 'v')
        o.text_lower = self.run_lower(self.embed_text(text_ids), 'text', text_mask)
        if 'l' in paths: o.text = self.run_top(o.text_lower, 'l', text_mask)
        return o


def run(name, variant, B, steps, device, dtype, reference=False):
    cfg = preset(name, variant=variant, drop_path_rate=0.0)
    torch.manual_seed(0)
    pm = PretrainModel(RefBackbone(cfg) if reference else VLTransformer(cfg)).to(device)
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
    out = {'model': 'reference' if reference else 'vlmerge', 'preset': name, 'variant': variant, 'device': device.type, 'dtype': dtype, 'batch': B,
           'params_M': round(sum(p.numel() for p in pm.parameters()) / 1e6, 1), 's_per_step': round(dt, 3),
           'samples_per_s': round(B / dt, 1), 'peak_rss_MiB': round(peak_rss_mib())}
    out['tflops'] = round(flops_per_step(cfg, B, min(cfg.max_text_len, 40)) / dt / 1e12, 4)
    if device.type == 'cuda': out['peak_gpu_MiB'] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out


def compare(name, variant, B, steps, device, dtype, repeat, peak_tflops=None):
    "vlmerge's step and the reference's, interleaved `repeat` times (the fastest of each kept): both rows and their ratio."
    rv, rr = [], []
    for _ in range(repeat):  # interleaved, so that the shared machine's load falls on both alike
        rv.append(run(name, variant, B, steps, device, dtype)); rr.append(run(name, variant, B, steps, device, dtype, reference=True))
    v, r = (min(x, key=lambda o: o['s_per_step']) for x in (rv, rr))
    for o in (v, r):
        if peak_tflops: o['mfu'] = round(o['tflops'] / peak_tflops, 4)
        print(o, flush=True)
    print(f"{name} ({device.type}, {dtype}, batch {B}): vlmerge / reference step time = {v['s_per_step'] / r['s_per_step']:.3f}", flush=True)
    return v, r


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--presets', nargs='*', default=['tiny', 'small'])
    ap.add_argument('--variant', default='specific')
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--repeat', type=int, default=3, help='interleaved runs of each model (the fastest is kept)')
    ap.add_argument('--peak-tflops', type=float, default=989.0)
    ap.add_argument('--cpu-dry-run', action='store_true', help="run the GPU measurement's code path (bf16 autocast, FLOPs, MFU) on CPU with the tiny preset")
    a = ap.parse_args()
    if a.cpu_dry_run:
        compare('tiny', a.variant, 4, 1, torch.device('cpu'), 'bf16', 1, a.peak_tflops)
        raise SystemExit(0)
    for name in a.presets:
        compare(name, a.variant, a.batch if name == 'tiny' else min(a.batch, 8), a.steps, torch.device('cpu'), 'fp32', a.repeat)
    if torch.cuda.is_available():
        compare('base', a.variant, 128, a.steps, torch.device('cuda'), 'bf16', a.repeat, a.peak_tflops)
    else:
        print('no CUDA device: the base/bf16 MFU figure needs a GPU (--cpu-dry-run runs its code path on CPU)')
