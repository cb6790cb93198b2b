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


def block(*, n, key, seq=12, dim=32, heads=4, vocab=64):
    """Token + position embeddings, one pre-norm block (causal multi-head attention, layer
    norms, GELU MLP), final layer norm and a vocabulary head."""
    k = jax.random.split(key, 10)
    ln = lambda: {"scale": jnp.ones(dim), "bias": jnp.zeros(dim)}
    params = {
        "tok": jax.random.normal(k[0], (vocab, dim)) * 0.1,
        "pos": jax.random.normal(k[1], (seq, dim)) * 0.1,
        "ln1": ln(), "qkv": _dense(k[2], dim, 3 * dim), "o": _dense(k[3], dim, dim),
        "ln2": ln(), "up": _dense(k[4], dim, 4 * dim), "down": _dense(k[5], 4 * dim, dim),
        "lnf": ln(), "head": _dense(k[6], dim, vocab),
    }
    hd = dim // heads
    mask = jnp.tril(jnp.ones((seq, seq), bool))

    def loss(p, tok, target):
        h = p["tok"][tok] + p["pos"]
        qkv = _layer_norm(p["ln1"], h) @ p["qkv"]["w"] + p["qkv"]["b"][None]
        q, kk, v = jnp.split(qkv.reshape(seq, 3, heads, hd), 3, axis=1)
        s = jnp.einsum("qhd,khd->hqk", q[:, 0], kk[:, 0]) / jnp.sqrt(float(hd))
        att = jax.nn.softmax(jnp.where(mask[None], s, -jnp.inf), axis=-1)
        h = h + jnp.einsum("hqk,khd->qhd", att, v[:, 0]).reshape(seq, dim) @ p["o"]["w"] \
            + p["o"]["b"][None]
        m = jax.nn.gelu(_layer_norm(p["ln2"], h) @ p["up"]["w"] + p["up"]["b"][None])
        h = h + m @ p["down"]["w"] + p["down"]["b"][None]
        logits = _layer_norm(p["lnf"], h) @ p["head"]["w"] + p["head"]["b"][None]
        return jnp.mean(jax.vmap(_ce)(logits, target))

    tok = jax.random.randint(k[8], (n, seq), 0, vocab)
    return loss, params, tok, jnp.roll(tok, -1, axis=1), (
        f"block: tok+pos embeddings, T={seq}, D={dim}, {heads} causal heads, GELU MLP")


def _conv(x, w, stride=1, dilation=1, groups=1):
    return jax.lax.conv_general_dilated(x[None], w, (stride, stride), "SAME",
                                        rhs_dilation=(dilation, dilation),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=groups)[0]


def gcnn(*, n, key, size=16, classes=10, kind="grouped"):
    """CNN: a 3x3 conv (16 channels), then one of: a grouped conv (groups = 4), a depthwise
    conv, a stride-2 conv, a dilation-2 conv (32 / 16 channels); ReLU, biases, global mean
    pool, dense head."""
    k = jax.random.split(key, 6)
    spec = {"grouped": (4, 32, 1, 1), "depthwise": (16, 16, 1, 1), "stride": (1, 32, 2, 1),
            "dilated": (1, 32, 1, 2)}[kind]
    g, c2, stride, dil = spec
    params = {
        "c1": {"w": jax.random.normal(k[0], (3, 3, 3, 16)) * jnp.sqrt(2.0 / 27),
               "b": jnp.zeros(16)},
        "c2": {"w": jax.random.normal(k[1], (3, 3, 16 // g, c2)) * jnp.sqrt(2.0 / (9 * 16 / g)),
               "b": jnp.zeros(c2)},
        "head": _dense(k[2], c2, classes),
    }

    def loss(p, x, y):
        h = jax.nn.relu(_conv(x, p["c1"]["w"]) + p["c1"]["b"][None, None])
        h = jax.nn.relu(_conv(h, p["c2"]["w"], stride, dil, g) + p["c2"]["b"][None, None])
        return _ce(jnp.mean(h, axis=(0, 1)) @ p["head"]["w"] + p["head"]["b"], y)

    x = jax.random.normal(k[3], (n, size, size, 3))
    y = jax.random.randint(k[4], (n,), 0, classes)
    return loss, params, x, y, f"CNN 3x3 conv 16 then {kind} conv {c2} (groups {g}, " \
                               f"stride {stride}, dilation {dil}), {size}x{size}x3"


def rnn(*, n, key, seq=16, d_in=8, hidden=64, classes=10):
    """Elman RNN in ``lax.scan`` (tanh, input and recurrent weights, bias), dense head on the
    last state."""
    k = jax.random.split(key, 6)
    params = {"wx": jax.random.normal(k[0], (d_in, hidden)) / jnp.sqrt(d_in),
              "wh": jax.random.normal(k[1], (hidden, hidden)) / jnp.sqrt(hidden),
              "b": jnp.zeros(hidden), "head": _dense(k[2], hidden, classes)}

    def loss(p, xs, y):
        step = lambda h, xt: (jnp.tanh(xt @ p["wx"] + h @ p["wh"] + p["b"]), None)
        h, _ = jax.lax.scan(step, jnp.zeros(hidden), xs)
        return _ce(h @ p["head"]["w"] + p["head"]["b"], y)

    x = jax.random.normal(k[3], (n, seq, d_in))
    y = jax.random.randint(k[4], (n,), 0, classes)
    return loss, params, x, y, f"RNN in lax.scan: T={seq}, input {d_in}, hidden {hidden}"


def tied(*, n, key, seq=16, dim=64, vocab=256):
    """Language model with tied embedding / output weights: embed, a GELU MLP per position,
    logits against the same table."""
    k = jax.random.split(key, 4)
    params = {"E": jax.random.normal(k[0], (vocab, dim)) * 0.1, "mlp": _dense(k[1], dim, dim)}

    def loss(p, tok, target):
        h = p["E"][tok]
        h = h + jax.nn.gelu(h @ p["mlp"]["w"] + p["mlp"]["b"][None])
        return jnp.mean(jax.vmap(_ce)(h @ p["E"].T, target))

    tok = jax.random.randint(k[2], (n, seq), 0, vocab)
    return loss, params, tok, jnp.roll(tok, -1, axis=1), (
        f"tied embedding/output: T={seq}, D={dim}, vocab {vocab}")


def mlp_wd(*, n, key, d=64, K=256, L=2, classes=10, wd=1e-3):
    """The ReLU MLP with an L2 weight-decay term on the weights written in the loss."""
    loss0, params, x, y, _ = mlp(n=n, d=d, K=K, L=L, key=key, classes=classes)

    def loss(p, xi, yi):
        return loss0(p, xi, yi) + wd * sum(jnp.sum(layer["w"] ** 2) for layer in p)

    return loss, params, x, y, f"ReLU MLP d={d}, K={K}, L={L} + {wd:g} * sum ||W||^2 in the loss"


MODELS = {"mlp": mlp, "cnn": cnn, "transformer": transformer, "block": block,
          "gcnn": gcnn, "dwcnn": lambda **kw: gcnn(kind="depthwise", **kw),
          "scnn": lambda **kw: gcnn(kind="stride", **kw),
          "dcnn": lambda **kw: gcnn(kind="dilated", **kw),
          "rnn": rnn, "tied": tied, "mlp_wd": mlp_wd}
