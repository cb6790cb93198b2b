"""Independent brute-force float64 Monte Carlo of E[S1], E[S2] (numpy, test-only).

Per-example gradients are materialised layer by layer (explicit backprop, batched over random
networks with einsum) — deliberately the plain way, sharing nothing with theory/ but NetSpec.
"""

import numpy as np


def sample_weights(spec, rng, N):
    return [rng.standard_normal((N, n_out, n_in)) * np.sqrt(float(s2) / n_in)
            for (n_in, n_out), s2 in zip(spec.layer_dims, spec.gain_squares)]


def linearised_softmax_grad(f, classes):
    """dloss/df of the cross-entropy with softmax(f) replaced by 1/c + (f - mean f)/c (plain
    numpy, written from the definition, not from theory/_softmax.py)."""
    c = f.shape[-1]
    soft = 1.0 / c + (f - f.mean(axis=-1, keepdims=True)) / c
    return soft - np.eye(c)[classes]


def per_network_S(spec, Ws, x, y, output_grad=None):
    """(S1, S2) for each of the N networks in ``Ws`` on data x (n×d), y (n×c); ``output_grad``
    (f, y) -> dloss/df replaces the squared loss's f - y."""
    relu = spec.activation == "relu"
    L = spec.depth
    alpha = spec.branch_scale or 0.0
    block = [spec.arch == "residual" and 2 <= l <= L - 1 for l in range(1, L + 1)]
    phi = (lambda h: np.maximum(h, 0.0)) if relu else (lambda h: h)
    dphi = (lambda h: (h > 0).astype(h.dtype)) if relu else (lambda h: np.ones_like(h))
    N = Ws[0].shape[0]
    inputs, pre = [], []  # inputs[l] = activation fed to W_{l+1}; pre[l] = h_{l+1}
    a = np.broadcast_to(x, (N,) + x.shape)
    h = None
    for l in range(L):
        inp = a if l == 0 else phi(h)
        inputs.append(inp)
        z = np.einsum("Noi,Nni->Nno", Ws[l], inp)
        h = h + alpha * z if block[l] else z
        pre.append(h)
    delta = h - y[None] if output_grad is None else output_grad(h, y)  # dloss/df
    S1 = np.zeros(N)
    S2 = np.zeros(N)
    for l in range(L - 1, -1, -1):
        scale = alpha if block[l] else 1.0
        g = scale * delta[:, :, :, None] * inputs[l][:, :, None, :]  # (N, n, out, in)
        S1 += np.sum(g * g, axis=(1, 2, 3))
        gs = g.sum(axis=1)
        S2 += np.sum(gs * gs, axis=(1, 2))
        if l == 0:
            break
        back = scale * np.einsum("Nno,Noi->Nni", delta, Ws[l]) * dphi(pre[l - 1])
        delta = delta + back if block[l] else back
    return S1, S2


def mc_moments(spec, x, y, *, samples, seed, chunk=2000, output_grad=None):
    """Means and standard errors of S1, S2 over ``samples`` random networks."""
    rng = np.random.default_rng(seed)
    s1, s2 = [], []
    done = 0
    while done < samples:
        N = min(chunk, samples - done)
        a, b = per_network_S(spec, sample_weights(spec, rng, N), x, y, output_grad)
        s1.append(a)
        s2.append(b)
        done += N
    s1, s2 = np.concatenate(s1), np.concatenate(s2)
    se = lambda v: v.std(ddof=1) / np.sqrt(len(v))  # noqa: E731
    return s1.mean(), se(s1), s2.mean(), se(s2)
