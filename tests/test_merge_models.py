"The merge engine on vlmerge's own models: fold(split(W)) = W for every method, agreement with the models' fold, Gram hooks on real experts, a fold config from a saved checkpoint folder."
import json
from pathlib import Path
import pytest, torch, yaml
from vlmerge.core import load_sd, sd_equal, save_sharded

models = pytest.importorskip('vlmerge.models.keymap')
from vlmerge.models.config import preset, agnostic
from vlmerge.models.keymap import key_map, split, fold, load_backbone
from vlmerge.models.transformer import VLTransformer, dummy_inputs
from vlmerge.merge.engine import fold_experts
from vlmerge.merge.ops import METHODS, merge_tensors
from vlmerge.merge.stats import collect_grams


def tiny(**kw):
    cfg = preset('tiny', variant='specific', **kw)
    torch.manual_seed(0)
    W = VLTransformer(agnostic(cfg)).state_dict()
    return cfg, W, key_map(cfg)


def expert_linears(model, km, parts=('qkv', 'proj', 'fc1', 'fc2')):
    mods = dict(model.named_modules())
    return [ek[:-len('.weight')] for ex in km.values() for ek in ex.values()
            if ek.endswith('.weight') and isinstance(mods.get(ek[:-len('.weight')]), torch.nn.Linear) and ek.split('.')[-2] in parts]


def test_fold_split_every_method():
    cfg, W, km = tiny()
    S = split(W, cfg)
    G = {k: (lambda X: X.T @ X)(torch.randn(64, S[k].shape[1], dtype=torch.float64)) for ex in km.values() for k in ex.values() if S[k].ndim == 2}
    F = {k: torch.rand_like(S[k]) for ex in km.values() for k in ex.values()}
    settings = {'task_arithmetic': dict(params={'lambda': .75}), 'ties': dict(density=.3), 'dare_linear': dict(density=.5),
                'dare_ties': dict(density=.5), 'interpolation': dict(alpha=.3), 'della': dict(density=.5, epsilon=.1),
                'sce': dict(select_topk=.5), 'wudi': dict(iter_num=3), 'nearswap': dict(t=1e-3)}
    cfg2, W2, km2 = tiny(vl_layers=0)  # for the methods that merge exactly two experts
    from vlmerge.merge.ops import STATISTICS
    for name, m in METHODS.items():  # every registered method, what it needs read from the registry
        b = m.base == 'required'
        S_, km_, W_ = (S, km, W) if m.accepts(3, b) else (split(W2, cfg2), km2, W2)
        kw = settings.get(name, {}) | ({'base': W_} if b else {}) | ({'aux': G if STATISTICS[m.aux].shape((4, 3)) == (3, 3) else F} if m.aux else {})
        assert sd_equal(fold_experts(S_, km_, name, **kw), W_), name
    assert len(METHODS) >= 26


def test_agrees_with_models_fold():
    cfg, W, km = tiny()
    S = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in split(W, cfg).items()}
    mine = fold_experts(S, km, 'linear')
    theirs = fold(S, cfg, lambda ts: sum(t.float() for t in ts) / len(ts))
    assert mine.keys() == theirs.keys()
    for k in mine: torch.testing.assert_close(mine[k], theirs[k])


def test_grams_from_real_experts_and_regmean():
    cfg, W, km = tiny()
    m = VLTransformer(cfg)
    S = {k: v + 0.01 * torch.randn_like(v) for k, v in split(W, cfg).items()}  # trained-like: LayerNorm biases not 0
    m.load_state_dict(S)
    names = expert_linears(m, km, ('proj', 'fc1', 'fc2'))
    G = collect_grams(m, names, [dummy_inputs(cfg, seed=s) for s in range(2)], lambda m, b: m(**b))
    assert set(G) == {n + '.weight' for n in names}
    r = fold_experts(S, km, 'regmean', aux=G)
    k = 'blocks.1.mlp.fc2.weight'
    ref = merge_tensors('regmean', [S[km[k][e]] for e in km[k]], aux=[G[km[k][e]] for e in km[k]])
    torch.testing.assert_close(r[k], ref)
    VLTransformer(agnostic(cfg)).load_state_dict(r)  # the fold is a complete modality-agnostic state dict


def test_grams_reach_qkv():
    cfg, W, km = tiny()
    m = VLTransformer(cfg)
    names = expert_linears(m, km, ('qkv',))
    G = collect_grams(m, names, [dummy_inputs(cfg)], lambda m, b: m(**b), strict=True)
    assert set(G) == {n + '.weight' for n in names}
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in G.values())


def test_fold_config_from_checkpoint_folder(tmp_path):
    cfg, W, km = tiny()
    m = VLTransformer(cfg); m.load_state_dict({k: v + 0.01 * torch.randn_like(v) for k, v in split(W, cfg).items()})
    m.save_pretrained(tmp_path/'specific')
    save_sharded(W, tmp_path/'seed')
    (tmp_path/'fold.yaml').write_text(yaml.safe_dump({'fold': str(tmp_path/'specific'), 'base_model': str(tmp_path/'seed'),
                                                      'merge_method': 'task_arithmetic', 'parameters': {'lambda': 0.75},
                                                      'rules': [{'filter': 'norm', 'merge_method': 'linear'}]}))
    from vlmerge.cli import main
    assert main(['merge', str(tmp_path/'fold.yaml'), '--out', str(tmp_path/'merged'), '--no-progress']) == 0
    out = load_sd(tmp_path/'merged')
    S = m.state_dict()
    k = 'blocks.1.attn.proj.weight'
    torch.testing.assert_close(out[k], W[k] + 0.75 * sum(S[ek] - W[k] for ek in km[k].values()))
    kn = 'blocks.0.norm1.weight'
    torch.testing.assert_close(out[kn], sum(S[ek] for ek in km[kn].values()) / len(km[kn]))
    assert json.loads((tmp_path/'merged'/'config.json').read_text())['variant'] == 'agnostic'
    merged = load_backbone(tmp_path/'merged')   # strict: the fold wrote exactly the agnostic model's keys
    assert merged.cfg.variant == 'agnostic'
