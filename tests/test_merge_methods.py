"""The 2024–2025 merge methods (vlmerge.merge.modern, issue 17): each kernel against an independent implementation
written here from its paper (NumPy, loops, other decompositions: not the kernel's code path), and a mergekit /
FusionBench-style YAML per method run unchanged through `vlmerge merge`.

    .venv/bin/python tests/test_merge_methods.py   # prints the largest difference per method"""
import math
import numpy as np
import pytest, torch, yaml
from vlmerge.core import save_sharded, load_sd
from vlmerge.merge import modern
from vlmerge.merge.ops import merge_tensors, seed_of
from vlmerge.merge.stats import collect_grams_sequential

DIFF = {}  # method -> largest |kernel − reference| seen


def record(name, got, ref, tol):
    d = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - np.asarray(ref, dtype=np.float64))))
    DIFF[name] = max(DIFF.get(name, 0.), d)
    assert d <= tol, f"{name}: max difference {d:.3g} > {tol}"


def problem(seed=0, shape=(7, 5), n=3, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=g)
    return [base + scale * torch.randn(shape, generator=g) for _ in range(n)], base


def npy(t): return t.double().numpy()


# ---- DELLA: ranks by sorting each row in Python, the same uniform draws, election and disjoint mean by loops ----
def della_ref(ts, base, weight, density, eps, lam, normalize, consensus, seed, key):
    rows = [npy(t - base).reshape(base.shape[0], -1) if base.ndim > 1 else npy(t - base).reshape(1, -1) for t in ts]
    pruned = []
    for i, tv in enumerate(rows):
        u = torch.rand(base.shape, generator=torch.Generator().manual_seed(seed_of((seed, key, i)))).double().numpy().reshape(tv.shape)
        out = np.zeros_like(tv)
        for r in range(tv.shape[0]):
            order = sorted(range(tv.shape[1]), key=lambda j: (abs(tv[r, j]), j))
            for rank, j in enumerate(order):
                p = density[i] - eps[i] + 2 * eps[i] * rank / (tv.shape[1] - 1)
                if u[r, j] < p: out[r, j] = tv[r, j] / p
        pruned.append(out * weight[i])
    res = np.zeros_like(pruned[0])
    for r in range(res.shape[0]):
        for j in range(res.shape[1]):
            vals = [p[r, j] for p in pruned]
            if consensus:
                s = 1. if sum(vals) >= 0 else -1.
                agree = [(v, w) for v, w in zip(vals, weight) if v * s > 0]
                tot = sum(v for v, _ in agree)
                div = sum(w for _, w in agree)
                res[r, j] = tot / div if normalize and div != 0 else tot
            else: res[r, j] = sum(vals) / (sum(weight) if normalize else 1.)
    return npy(base) + lam * res.reshape(base.shape)


@pytest.mark.parametrize('name', ['della', 'della_linear'])
def test_della_reference(name):
    ts, base = problem(1, (6, 9))
    kw = dict(weight=[1., .5, 2.], density=[.5, .6, .4], epsilon=[.1, .2, .15], seed=3)
    got = merge_tensors(name, ts, base, key='k', **kw, **{'lambda': .8})
    ref = della_ref(ts, base, kw['weight'], kw['density'], kw['epsilon'], .8, name == 'della', name == 'della', 3, 'k')
    record(name, got, ref, 1e-5)


# ---- SCE: per-coordinate loops ----
def sce_ref(ts, base, topk):
    tv = np.stack([npy(t - base).reshape(-1) for t in ts])
    T, n = tv.shape
    var = np.array([np.mean((tv[:, j] - tv[:, j].mean()) ** 2) for j in range(n)])
    if topk < 1:
        k = int(topk * np.count_nonzero(var))
        keep = set(sorted(range(n), key=lambda j: -var[j])[:k])
        tv = np.array([[tv[i, j] if j in keep else 0. for j in range(n)] for i in range(T)])
    e = [sum(x * x for x in tv[i]) for i in range(T)]
    eta = [x / sum(e) for x in e] if sum(e) > 0 else [1 / T] * T
    out = np.zeros(n)
    for j in range(n):
        s = 1 if tv[:, j].sum() >= 0 else -1
        num = sum(eta[i] * tv[i, j] for i in range(T) if np.sign(tv[i, j]) == s)
        den = sum(eta[i] for i in range(T) if np.sign(tv[i, j]) == s)
        out[j] = num / den if den else num
    return npy(base) + out.reshape(base.shape)


@pytest.mark.parametrize('topk', [1., .3])
def test_sce_reference(topk):
    ts, base = problem(2)
    record('sce', merge_tensors('sce', ts, base, select_topk=topk), sce_ref(ts, base, topk), 1e-5)


# ---- Karcher mean: Riemannian gradient descent with a small step, many iterations, in NumPy float64 ----
def karcher_ref(ts, steps=2000, step=0.5):
    xs = [npy(t).reshape(-1) for t in ts]
    us = [x / np.linalg.norm(x) for x in xs]
    mu = us[0].copy()
    for _ in range(steps):
        grad = np.zeros_like(mu)
        for u in us:
            c = np.clip(mu @ u, -1, 1); th = np.arccos(c)
            if th > 1e-12: grad += th / np.sin(th) * (u - c * mu)
        grad /= len(us)
        gn = np.linalg.norm(grad)
        if gn < 1e-14: break
        mu = np.cos(step * gn) * mu + np.sin(step * gn) * grad / gn
        mu /= np.linalg.norm(mu)
    return (np.mean([np.linalg.norm(x) for x in xs]) * mu).reshape(ts[0].shape)


def test_karcher_reference():
    ts, _ = problem(3, scale=1.)
    record('karcher', merge_tensors('karcher', ts, max_iter=200, tol=1e-9), karcher_ref(ts), 1e-5)


# ---- multi-SLERP: NumPy, explicit projections ----
def multislerp_ref(ts, base, w, eps=1e-8):
    xs = [npy(t - base if base is not None else t).reshape(-1) for t in ts]
    w = np.array(w) / np.sum(w)
    nrm = [np.linalg.norm(x) for x in xs]
    us = [x / (n + eps) for x, n in zip(xs, nrm)]
    mu = sum(wi * u for wi, u in zip(w, us)); mu /= np.linalg.norm(mu)
    v = sum(wi * (u - (u @ mu) * mu) for wi, u in zip(w, us))
    vn = np.linalg.norm(v) + eps
    r = (np.cos(vn) * mu + np.sin(vn) / vn * v) * sum(wi * n for wi, n in zip(w, nrm))
    r = r.reshape(ts[0].shape)
    return r + npy(base) if base is not None else r


@pytest.mark.parametrize('with_base', [False, True])
def test_multislerp_reference(with_base):
    ts, base = problem(4, scale=1.)
    b = base if with_base else None
    record('multislerp', merge_tensors('multislerp', ts, b, weight=[1., 2., .5]), multislerp_ref(ts, b, [1., 2., .5]), 1e-5)


# ---- NuSLERP: angle by atan2, per vector in Python ----
def slerp_vec(t, a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    th = math.atan2(math.sqrt(max(0., (na * nb) ** 2 - (a @ b) ** 2)), a @ b)
    if abs(math.sin(th)) < 1e-8: return (1 - t) * a + t * b
    return (math.sin((1 - t) * th) * a + math.sin(t * th) * b) / math.sin(th)


def nuslerp_ref(ts, base, w, flatten, row_wise):
    t = w[1] / (w[0] + w[1])
    a, b = (npy(x - base) if base is not None else npy(x) for x in ts)
    if flatten: r = slerp_vec(t, a.reshape(-1), b.reshape(-1)).reshape(a.shape)
    elif row_wise: r = np.stack([slerp_vec(t, a[:, j], b[:, j]) for j in range(a.shape[1])], 1)
    else: r = np.stack([slerp_vec(t, a[i], b[i]) for i in range(a.shape[0])])
    return r + npy(base) if base is not None else r


@pytest.mark.parametrize('flatten,row_wise,with_base', [(True, False, False), (False, False, True), (False, True, False)])
def test_nuslerp_reference(flatten, row_wise, with_base):
    ts, base = problem(5, n=2, scale=1.)
    b = base if with_base else None
    got = merge_tensors('nuslerp', ts, b, weight=[1., 3.], nuslerp_flatten=flatten, nuslerp_row_wise=row_wise)
    record('nuslerp', got, nuslerp_ref(ts, b, [1., 3.], flatten, row_wise), 1e-5)


# ---- nearswap and MagMax: one coordinate at a time ----
def test_nearswap_reference():
    ts, base = problem(6, n=1, scale=0.01)
    a, b, t = npy(base).reshape(-1), npy(ts[0]).reshape(-1), 0.005
    ref = []
    for x, y in zip(a, b):
        lw = 1. if x == y else min(1., t / abs(x - y))
        ref.append(lw * y + (1 - lw) * x)
    record('nearswap', merge_tensors('nearswap', ts, base, t=t), np.array(ref).reshape(base.shape), 1e-6)


def test_magmax_reference():
    ts, base = problem(7)
    tv = [npy(t - base).reshape(-1) for t in ts]
    ref = []
    for j in range(tv[0].size):
        best = tv[0][j]
        for v in tv[1:]:
            if abs(v[j]) > abs(best): best = v[j]
        ref.append(best)
    record('magmax', merge_tensors('magmax', ts, base, scaling_factor=.7), npy(base) + .7 * np.array(ref).reshape(base.shape), 1e-6)


# ---- SVD-based: NumPy SVDs, polar factors from eigendecompositions M (MᵀM)^(-1/2) ----
def polar_eig(M):
    "Orthonormal polar factor of a full-column-rank M, by the eigendecomposition of MᵀM."
    lam, Q = np.linalg.eigh(M.T @ M)
    return M @ (Q / np.sqrt(lam)) @ Q.T


def tsv_ref(ts, base, alpha):
    tvs = [npy(t - base) for t in ts]
    k = min(base.shape) // len(ts)
    Us, Ss, Vs = [], [], []
    for tv in tvs:
        U, S, Vt = np.linalg.svd(tv, full_matrices=False)
        Us.append(U[:, :k]); Ss.append(S[:k]); Vs.append(Vt[:k].T)
    U, S, V = np.hstack(Us), np.concatenate(Ss), np.hstack(Vs)
    return npy(base) + alpha * polar_eig(U) @ np.diag(S) @ polar_eig(V).T


def iso_cts_ref(ts, base, s, frac):
    tvs = [npy(t - base) for t in ts]
    T, r = len(ts), min(base.shape)
    kt = round((r - int(r * frac)) / T); kc = r - kt * T
    U, S, Vt = np.linalg.svd(sum(tvs), full_matrices=False)
    Uc = U[:, :kc]
    cols_u, cols_v, svals = [Uc], [Vt[:kc].T], list(S[:kc])
    for tv in tvs:
        u, sv, vt = np.linalg.svd(tv - Uc @ Uc.T @ tv, full_matrices=False)
        cols_u.append(u[:, :kt]); cols_v.append(vt[:kt].T); svals += list(sv[:kt])
    return npy(base) + s * np.mean(svals) * polar_eig(np.hstack(cols_u)) @ polar_eig(np.hstack(cols_v)).T


def test_tsv_reference():
    ts, base = problem(8, (9, 6))
    record('tsv', merge_tensors('tsv', ts, base, alpha=.9), tsv_ref(ts, base, .9), 1e-5)
    ts, base = problem(8, (6,))
    record('tsv', merge_tensors('tsv', ts, base, alpha=.9), npy(base) + .9 * np.mean([npy(t - base) for t in ts], 0), 1e-6)


def test_iso_reference():
    for shape in [(9, 6), (5, 8)]:
        ts, base = problem(9, shape)
        # UVᵀ of M is M's polar factor: for a wide M, that of Mᵀ transposed
        M = sum(npy(t - base) for t in ts)
        P = polar_eig(M) if M.shape[0] >= M.shape[1] else polar_eig(M.T).T
        ref = npy(base) + 1.3 * np.linalg.svd(M, compute_uv=False).mean() * P
        record('iso_c', merge_tensors('iso_c', ts, base, scaling_factor=1.3), ref, 1e-5)
        record('iso_cts', merge_tensors('iso_cts', ts, base, scaling_factor=1.3, common_space_fraction=.5),
               iso_cts_ref(ts, base, 1.3, .5), 1e-5)


# ---- WUDI: autograd and torch.optim.Adam on the paper's loss, float64 ----
def test_wudi_reference():
    ts, base = problem(10, (8, 6))
    ts, base = [t.double() for t in ts], base.double()
    tvs = torch.stack([t - base for t in ts])
    tau = torch.nn.Parameter(tvs.sum(0).clone())
    opt = torch.optim.Adam([tau], lr=1e-3)
    n2 = tvs.reshape(len(ts), -1).norm(dim=1) ** 2
    for _ in range(40):
        loss = (((tau.unsqueeze(0) - tvs) @ tvs.transpose(1, 2)) ** 2 / n2[:, None, None]).sum()
        opt.zero_grad(); loss.backward(); opt.step()
    got = modern.wudi(ts, base, iter_num=40, lr=1e-3)  # the kernel itself, in float64
    record('wudi', got, (base + tau.detach()).numpy(), 1e-9)
    got32 = merge_tensors('wudi', [t.float() for t in ts], base.float(), iter_num=40, lr=1e-3)  # float32, as the engine runs it
    record('wudi (float32)', got32, (base + tau.detach()).numpy(), 1e-4)


# ---- RegMean++: least-squares fits layer by layer, propagating through the merged layers, in NumPy ----
def test_regmean_plusplus_reference():
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)) for _ in range(2)]
    data = [[torch.randn(20, 4)], [torch.randn(20, 4) * 2]]
    groups = [['0'], ['2']]
    merged = {}

    def merge(g, grams):
        n = groups[g][0]
        W = merge_tensors('regmean_plusplus', [m.get_parameter(f'{n}.weight').detach() for m in nets],
                          aux=[G[f'{n}.weight'] for G in grams])
        b = merge_tensors('regmean_plusplus', [m.get_parameter(f'{n}.bias').detach() for m in nets], aux=[None, None])
        merged.update({f'{n}.weight': W, f'{n}.bias': b})
        return {f'{n}.weight': W, f'{n}.bias': b}
    collect_grams_sequential(nets, groups, data, lambda m, x: m(x), merge)
    # reference: W_l = argmin Σ_i ‖X_i Wᵀ − X_i W_{i,l}ᵀ‖², X_i from the merged earlier layers
    X = [npy(d[0]) for d in data]
    for n, act in (('0', np.tanh), ('2', None)):
        Ws = [npy(m.get_parameter(f'{n}.weight').detach()) for m in nets]
        A = np.vstack(X); Y = np.vstack([x @ w.T for x, w in zip(X, Ws)])
        W = np.linalg.lstsq(A, Y, rcond=None)[0].T
        b = np.mean([npy(m.get_parameter(f'{n}.bias').detach()) for m in nets], 0)
        record('regmean_plusplus', merged[f'{n}.weight'], W, 1e-4)
        X = [x @ npy(merged[f'{n}.weight']).T + npy(merged[f'{n}.bias']) for x in X]
        if act: X = [act(x) for x in X]


# ---- YAML: a mergekit / FusionBench config per method, unchanged, through `vlmerge merge` ----
def rand_sd(seed, base=None):
    g = torch.Generator().manual_seed(seed)
    shapes = {'model.embed_tokens.weight': (12, 8), 'model.layers.0.mlp.up_proj.weight': (10, 8),
              'model.layers.0.input_layernorm.weight': (8,), 'model.layers.1.self_attn.q_proj.weight': (8, 8)}
    return {k: (base[k] if base else 0) + torch.randn(s, generator=g) * (0.1 if base else 1.) for k, s in shapes.items()}


CONFIGS = {
    'della': dict(base_model='base', models=[{'model': 'base'}, {'model': 'a', 'parameters': {'weight': 1.0, 'density': 0.5, 'epsilon': 0.1}},
                  {'model': 'b', 'parameters': {'weight': 0.5, 'density': 0.6, 'epsilon': 0.15}}],
                  parameters={'lambda': 0.9, 'normalize': True, 'int8_mask': True}, dtype='float32'),
    'della_linear': dict(base_model='base', models=[{'model': 'a', 'parameters': {'weight': 0.6, 'density': 0.5}},
                         {'model': 'b', 'parameters': {'weight': 0.4, 'density': 0.5}}], parameters={'epsilon': 0.05, 'lambda': 1.1}),
    'sce': dict(base_model='base', models=[{'model': 'a'}, {'model': 'b'}, {'model': 'c'}], parameters={'select_topk': 0.3}, dtype='float32'),
    'karcher': dict(models=[{'model': 'a'}, {'model': 'b'}, {'model': 'c'}], parameters={'max_iter': 20, 'tol': 1e-6}),
    'multislerp': dict(base_model='base', models=[{'model': 'a', 'parameters': {'weight': 1.0}}, {'model': 'b', 'parameters': {'weight': 2.0}}],
                       parameters={'normalize_weights': True}),
    'nuslerp': dict(models=[{'model': 'a', 'parameters': {'weight': 1.0}}, {'model': 'b', 'parameters': {'weight': 3.0}}],
                    parameters={'nuslerp_flatten': False, 'nuslerp_row_wise': True}),
    'nearswap': dict(base_model='base', models=[{'model': 'base'}, {'model': 'a'}], parameters={'t': 0.05}),
    'magmax': dict(base_model='base', models=[{'model': 'a'}, {'model': 'b'}], parameters={'scaling_factor': 0.8}),
    'tsv': dict(base_model='base', models=[{'model': 'a'}, {'model': 'b'}, {'model': 'c'}], parameters={'alpha': 1.0}),
    'iso_c': dict(base_model='base', models=[{'model': 'a'}, {'model': 'b'}], parameters={'scaling_factor': 1.2}),
    'iso_cts': dict(base_model='base', models=[{'model': 'a'}, {'model': 'b'}], parameters={'scaling_factor': 1.2, 'common_space_fraction': 0.5}),
    'wudi': dict(base_model='base', models=[{'model': 'a'}, {'model': 'b'}], parameters={'iter_num': 30, 'lr': 1e-3}),
    'regmean_plusplus': dict(models=[{'model': 'a', 'statistics': 'grams_a'}, {'model': 'b', 'statistics': 'grams_b'}],
                             parameters={'reduce_non_diagonal_ratio': 0.9}),
}


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
    d = tmp_path_factory.mktemp('models')
    base = rand_sd(0); sds = {'base': base} | {n: rand_sd(i + 1, base) for i, n in enumerate('abc')}
    for n, sd in sds.items(): save_sharded(sd, d/n, max_shard_bytes=700)
    for n in 'ab':
        g = torch.Generator().manual_seed(ord(n))
        G = {}
        for k, v in sds[n].items():
            if v.ndim == 2:
                X = torch.randn(40, v.shape[1], generator=g, dtype=torch.float64); G[k] = X.T @ X
        save_sharded(G, d/f'grams_{n}')
    return d, sds


def _paths(cfg, d):
    cfg = dict(cfg)
    if 'base_model' in cfg: cfg['base_model'] = str(d/cfg['base_model'])
    cfg['models'] = [{**m, 'model': str(d/m['model']), **({'statistics': str(d/m['statistics'])} if 'statistics' in m else {})} for m in cfg['models']]
    return cfg


@pytest.mark.parametrize('method', list(CONFIGS))
def test_yaml_runs_unchanged(method, folders, tmp_path):
    from vlmerge.cli import main
    d, sds = folders
    cfg = _paths({'merge_method': method, **CONFIGS[method]}, d)
    p = tmp_path/'merge.yaml'; p.write_text(yaml.safe_dump(cfg))
    assert main(['merge', str(p), '--out', str(tmp_path/'out'), '--no-progress']) == 0
    out = load_sd(tmp_path/'out')
    names = [m['model'] for m in CONFIGS[method]['models'] if m['model'] != CONFIGS[method].get('base_model')]
    base = sds['base'] if 'base_model' in CONFIGS[method] else None
    params = dict(CONFIGS[method].get('parameters', {}))
    per = {}
    for m in CONFIGS[method]['models']:
        for k, v in (m.get('parameters') or {}).items(): per.setdefault(k, []).append(v)
    for k in out:
        aux = None
        if method == 'regmean_plusplus':
            aux = [load_sd(d/f'grams_{n}').get(k) for n in names]
        ref = merge_tensors(method, [sds[n][k] for n in names], base[k] if base is not None else None, aux=aux, key=k, **params, **per)
        torch.testing.assert_close(out[k], ref, rtol=0, atol=1e-6)
    assert set(out) == set(sds['base'])


if __name__ == '__main__':
    for name, f in list(globals().items()):
        if not name.startswith('test_') or name == 'test_yaml_runs_unchanged': continue
        marks = getattr(f, 'pytestmark', [])
        if marks:
            for args in marks[0].args[1]: f(*args) if isinstance(args, tuple) else f(args)
        else: f()
    print(f"{'method':20s} {'max |kernel − independent|':>28s}")
    for k, v in DIFF.items(): print(f"{k:20s} {v:28.2e}")
