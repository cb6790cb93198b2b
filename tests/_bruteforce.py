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


#: Three-point Gauss-Hermite rule for N(0, 1): nodes 0, ±√3 with probabilities 2/3, 1/6, 1/6.
#: It reproduces every moment of N(0, 1) up to degree 5 exactly.
GH3_NODES = np.array([-np.sqrt(3.0), 0.0, np.sqrt(3.0)])
GH3_PROBS = np.array([1.0, 4.0, 1.0]) / 6.0


def exact_linear_moments(spec, x, y, *, output_grad=None, max_params=12, chunk=1 << 15):
    """EXACT E[S1], E[S2] of a small *linear* net by enumerating every weight configuration of
    the three-point rule (3**params networks).

    Why exact: for identity activations every per-example gradient entry is a polynomial of
    degree ≤ 2 in any single weight entry (its layer's input and backward signal are affine in
    a weight of another layer, the residual f − y or the linearised-softmax gradient is affine
    in every weight), so S1 and S2 have degree ≤ 4 in each entry. The entries are independent
    and the product rule integrates every monomial of degree ≤ 5 per entry exactly. Only
    floating-point rounding remains (all terms are nonnegative: no cancellation).
    """
    if spec.activation != "linear":
        raise ValueError("the quadrature is exact for linear nets only")
    P = spec.params
    if P > max_params:
        raise ValueError(f"{P} parameters: 3**{P} networks is too many")
    scales = np.concatenate([np.full(n_in * n_out, np.sqrt(float(s2) / n_in))
                             for (n_in, n_out), s2 in zip(spec.layer_dims, spec.gain_squares)])
    total = 3 ** P
    e1 = e2 = 0.0
    powers = 3 ** np.arange(P)
    for start in range(0, total, chunk):
        k = np.arange(start, min(total, start + chunk))
        digits = (k[:, None] // powers[None, :]) % 3          # (N, P) node index per entry
        w = GH3_NODES[digits] * scales[None, :]
        prob = np.prod(GH3_PROBS[digits], axis=1)
        Ws, at = [], 0
        for n_in, n_out in spec.layer_dims:
            Ws.append(w[:, at:at + n_in * n_out].reshape(-1, n_out, n_in))
            at += n_in * n_out
        s1, s2 = per_network_S(spec, Ws, x, y, output_grad)
        e1 += float(prob @ s1)
        e2 += float(prob @ s2)
    return e1, e2
