"""Parameter counts per preset x variant, and CPU forward throughput of the `tiny` and `small` presets.

    .venv/bin/python benchmarks/models_throughput.py [--seconds 3] [--threads N]

Throughput is samples/s of `model(image, text_ids, text_mask)` in eval mode without gradients,
computing all three paths (V, L and the fused VL path; the lower blocks run once per modality),
and of the V path alone (image only). Text length is the preset's max_text_len. For scale on a
shared or busy machine, the same run times timm's ViT-S/16 (random weights) on images."""
import argparse, time
import timm, torch
from vlmerge.core import set_seed
from vlmerge.models.config import preset
from vlmerge.models.keymap import param_table
from vlmerge.models.transformer import VLTransformer, dummy_inputs


def throughput(model, inputs, seconds):
    "Samples per second of `model(**inputs)`, timed for at least `seconds` after one warm-up call."
    with torch.inference_mode():
        model(**inputs); n, t0 = 0, time.perf_counter()
        while (dt := time.perf_counter() - t0) < seconds or n < 2:
            model(**inputs); n += 1
    return n * len(next(iter(inputs.values()))) / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seconds', type=float, default=3.0, help='timing per measurement')
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch\'s choice)')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    print('Parameters (blocks: the transformer blocks; saved: total minus the agnostic model of the same preset)')
    print(param_table())
    print(f"\nCPU forward throughput, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'preset':<7}{'variant':<10}{'batch':>6}{'V+L+VL samples/s':>18}{'V only samples/s':>18}")
    for name, batch in (('tiny', 32), ('small', 4)):
        for variant in ('specific', 'agnostic'):
            set_seed(0); cfg = preset(name, variant=variant)
            model = VLTransformer(cfg).eval(); inp = dummy_inputs(cfg, batch=batch)
            full = throughput(model, inp, a.seconds); img = throughput(model, {'image': inp['image']}, a.seconds)
            print(f"{name:<7}{variant:<10}{batch:>6}{full:>18.1f}{img:>18.1f}")
    vit = timm.create_model('vit_small_patch16_224', pretrained=False).eval()
    ref = throughput(vit, {'x': torch.randn(4, 3, 224, 224)}, a.seconds)
    print(f"{'timm vit_small_patch16_224 (reference)':<41}{ref:>18.1f}")


if __name__ == '__main__': main()
