"""Plain-JAX models of the ``numerics.bench`` generic suite, each a per-example loss.

* ``mlp``: ReLU MLP with biases, depth L weight matrices of width K, 10 classes, cross-entropy
  (the configuration peer per-example-norm libraries are benchmarked on: n = 512, d = 64);
* ``cnn``: two 3×3 convolutions (16, 32 channels, the second with stride 2) with biases and
  ReLU, then a dense 10-way head, on 16×16×3 images;
* ``transformer``: token embedding, one pre-norm block (4-head self-attention with q/k/v/o
  projections and biases, layer norms with scale and bias, a 4× ReLU MLP) and a vocabulary
  head, next-token cross-entropy over a sequence.

``make(name, **sizes, key=)`` returns ``(loss, params, x, y, description)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _dense(key, n_in, n_out):
    return {"w": jax.random.normal(key, (n_in, n_out)) * jnp.sqrt(2.0 / n_in),
            "b": jnp.zeros(n_out)}


def _ce(logits, label):
    return jax.nn.logsumexp(logits) - logits[label]


def mlp(*, n, d, K, L, key, classes=10):
    keys = jax.random.split(key, L + 2)
    dims = [d] + [K] * (L - 1) + [classes]
    params = [_dense(keys[l], dims[l], dims[l + 1]) for l in range(L)]

    def loss(p, x, y):
        h = x
        for layer in p[:-1]:
            h = jax.nn.relu(h @ layer["w"] + layer["b"])
        return _ce(h @ p[-1]["w"] + p[-1]["b"], y)

    x = jax.random.normal(keys[-2], (n, d))
    y = jax.random.randint(keys[-1], (n,), 0, classes)
    return loss, params, x, y, f"ReLU MLP with biases, d={d}, K={K}, L={L}, 10 classes"


def cnn(*, n, key, size=16, channels=(16, 32), classes=10):
    k = jax.random.split(key, 5)
    c1, c2 = channels
    out = size // 2
    params = {
        "c1": {"w": jax.random.normal(k[0], (3, 3, 3, c1)) * jnp.sqrt(2.0 / 27),
               "b": jnp.zeros(c1)},
        "c2": {"w": jax.random.normal(k[1], (3, 3, c1, c2)) * jnp.sqrt(2.0 / (9 * c1)),
               "b": jnp.zeros(c2)},
        "head": _dense(k[2], out * out * c2, classes),
    }
    dn = ("NHWC", "HWIO", "NHWC")

    def loss(p, x, y):
        h = jax.lax.conv_general_dilated(x[None], p["c1"]["w"], (1, 1), "SAME",
                                         dimension_numbers=dn)[0]
        h = jax.nn.relu(h + p["c1"]["b"][None, None])
        h = jax.lax.conv_general_dilated(h[None], p["c2"]["w"], (2, 2), "SAME",
                                         dimension_numbers=dn)[0]
        h = jax.nn.relu(h + p["c2"]["b"][None, None])
        return _ce(h.reshape(-1) @ p["head"]["w"] + p["head"]["b"], y)

    x = jax.random.normal(k[3], (n, size, size, 3))
    y = jax.random.randint(k[4], (n,), 0, classes)
    return loss, params, x, y, f"CNN 3x3 conv {c1},{c2} (stride 2) + dense, {size}x{size}x3"


def _layer_norm(p, h):
    mu = jnp.mean(h, axis=-1, keepdims=True)
    var = jnp.mean((h - mu) ** 2, axis=-1, keepdims=True)
    return (h - mu) * jax.lax.rsqrt(var + 1e-6) * p["scale"][None] + p["bias"][None]


def transformer(*, n, key, seq=32, dim=64, heads=4, vocab=256):
    k = jax.random.split(key, 10)
    ln = lambda: {"scale": jnp.ones(dim), "bias": jnp.zeros(dim)}
    params = {
        "embed": jax.random.normal(k[0], (vocab, dim)) * 0.02,
        "ln1": ln(), "q": _dense(k[1], dim, dim), "k": _dense(k[2], dim, dim),
        "v": _dense(k[3], dim, dim), "o": _dense(k[4], dim, dim),
        "ln2": ln(), "up": _dense(k[5], dim, 4 * dim), "down": _dense(k[6], 4 * dim, dim),
        "lnf": ln(), "head": _dense(k[7], dim, vocab),
    }
    hd = dim // heads
    causal = jnp.tril(jnp.ones((seq, seq), bool))

    def loss(p, tok, target):
        h = p["embed"][tok]                                            # (S, D)
        a = _layer_norm(p["ln1"], h)
        proj = lambda name: (a @ p[name]["w"] + p[name]["b"][None]).reshape(seq, heads, hd)
        q, kk, v = proj("q"), proj("k"), proj("v")
        s = jnp.einsum("qhd,khd->hqk", q, kk) / jnp.sqrt(float(hd))
        s = jnp.where(causal[None], s, -1e9)
        att = jnp.einsum("hqk,khd->qhd", jax.nn.softmax(s, axis=-1), v).reshape(seq, dim)
        h = h + att @ p["o"]["w"] + p["o"]["b"][None]
        m = _layer_norm(p["ln2"], h)
        up = jax.nn.relu(m @ p["up"]["w"] + p["up"]["b"][None])
        h = h + up @ p["down"]["w"] + p["down"]["b"][None]
        logits = _layer_norm(p["lnf"], h) @ p["head"]["w"] + p["head"]["b"][None]
        return jnp.mean(jax.vmap(_ce)(logits, target))

    tok = jax.random.randint(k[8], (n, seq), 0, vocab)
    target = jnp.roll(tok, -1, axis=1)
    return loss, params, tok, target, (f"transformer block: S={seq}, D={dim}, {heads} heads, "
                                       f"MLP {4 * dim}, vocab {vocab}")


MODELS = {"mlp": mlp, "cnn": cnn, "transformer": transformer}
