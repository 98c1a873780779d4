"Distances on a real tiny vlmerge model: split → perturb the experts → distances, and the CLI on a saved checkpoint folder."
import json
import pytest, torch
from vlmerge.metrics.distance import METRICS, distances, summarize

keymap = pytest.importorskip('vlmerge.models.keymap')
config = pytest.importorskip('vlmerge.models.config')
transformer = pytest.importorskip('vlmerge.models.transformer')

def _tiny(variant='specific'):
    torch.manual_seed(0)
    cfg = config.preset('tiny', variant=variant)
    sd0 = {k: v.detach().clone() for k, v in transformer.VLTransformer(config.agnostic(cfg)).state_dict().items()}
    return cfg, sd0

@pytest.mark.parametrize('variant', ['specific', 'attn', 'ffn', 'norm'])
def test_split_perturb_distances(variant):
    cfg, sd0 = _tiny(variant)
    km = keymap.key_map(cfg)
    split = keymap.split(sd0, cfg)
    for row in summarize(distances(split, km, base=sd0), by=('layer', 'group', 'pair')):  # split: every expert is W0
        assert [row[m] for m in METRICS] == [0., 0., 0., 0.]
    for row in summarize(distances(split, km), by=('pair',)):
        assert [row[m] for m in METRICS] == [0., 0., 0., 0.]
    g = torch.Generator().manual_seed(1)
    experts = {ek for d in km.values() for ek in d.values()}
    near = {k: v + 1e-3 * torch.randn(v.shape, generator=g) if k in experts else v for k, v in split.items()}
    far = {k: v + 1e-1 * torch.randn(v.shape, generator=g) if k in experts else v for k, v in split.items()}
    rn, rf = (summarize(distances(s, km), by=())[0] for s in (near, far))
    assert rn['l2'] < rf['l2'] and rn['cos'] < rf['cos'] and rn['ssd'] < rf['ssd']
    recs = distances(near, km, base=sd0)
    groups = {r['group'] for r in recs}
    assert groups == {'attn': {'attn', 'norm'}, 'ffn': {'ffn', 'norm'}, 'norm': {'norm'}, 'specific': {'attn', 'ffn', 'norm'}}[variant]
    assert {r['layer'] for r in recs} == set(range(cfg.depth))
    assert {r['pair'] for r in recs} == ({'v-l', 'v-vl', 'l-vl'} if cfg.vl_layers else {'v-l'})

def test_cli_on_checkpoint_folder(tmp_path, capsys):
    cfg, sd0 = _tiny()
    model = transformer.VLTransformer(cfg)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters(): p.add_(1e-2 * torch.randn(p.shape, generator=g))
    model.save_pretrained(tmp_path/'ck')
    from vlmerge.core import save_sd
    save_sd(keymap.split(sd0, cfg), tmp_path/'w0.safetensors')
    assert (tmp_path/'ck'/'config.json').exists()
    from vlmerge.metrics.report import distance_cmd
    distance_cmd([str(tmp_path/'ck'), '--base', str(tmp_path/'w0.safetensors'), '--out', str(tmp_path/'o')])
    out = capsys.readouterr().out
    assert 'pair v-l' in out and 'group attn' in out
    assert (tmp_path/'o'/'heatmap.png').exists()
