"""Theory's prediction for each trained net: :math:`\\bar B_S` at initialisation for the
training loss, cached next to the sweep.

The report (not the sweep) asks theory, so a sweep's training time is not spent on it and an
improved theory can be asked again without retraining: every prediction is stored in
``OUT/theory/<arch_id>.json`` with a fingerprint of the ``theory/`` sources that made it, and
recomputed when that fingerprint changes. Theory never imports jax.

* squared loss (on the data's targets, centred one-hot for classification):
  :func:`theory.expected_moments` with ``y`` the targets;
* cross-entropy: the same call with ``loss="cross_entropy"`` and integer classes: theory's
  linearised-softmax moments (``softmax="linearised"``, kinds such as ``"exact (linearised
  softmax)"``; the default softmax correction is not used here yet; at the default
  output gain they sit 4–11% below the true cross-entropy's B̄_S, see the top-level README);
  where theory has no answer the net is "not covered", with the reason theory gave.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from ._records import read_json, write_json_atomic


def theory_fingerprint() -> str:
    """sha256 (first 12 hex digits) of the ``theory/`` package's ``.py`` sources."""
    import theory

    root = os.path.dirname(theory.__file__)
    h = hashlib.sha256()
    for f in sorted(os.listdir(root)):
        if f.endswith(".py"):
            with open(os.path.join(root, f), "rb") as fh:
                h.update(f.encode() + b"\0" + fh.read())
    return h.hexdigest()[:12]


def theory_prediction(spec, ds, loss: str, *, delta: float = 1.0) -> dict:
    """Theory's :math:`\\bar B_S` and :math:`\\delta\\bar B_S + 1` for ``spec`` on ``ds`` with
    the training ``loss``; ``{"covered": False, "reason": ...}`` where theory has no answer.

    Theory raises ``ValueError`` or ``NotImplementedError`` for models it does not
    cover; nothing else is caught.
    """
    import theory

    x = np.asarray(ds.x, np.float64)
    try:
        if loss == "cross_entropy":
            res = theory.expected_moments(spec, x, np.asarray(ds.classes), delta=delta,
                                          data=ds.description, loss="cross_entropy",
                                          softmax="linearised")
        else:
            res = theory.expected_moments(spec, x, np.asarray(ds.y, np.float64), delta=delta,
                                          data=ds.description)
    except (ValueError, NotImplementedError) as err:
        return {"covered": False, "loss": loss, "reason": f"theory: {err}"}
    d = res.to_dict()
    return {"covered": True, "loss": loss, "B_bar_S": d["batch_size_bound"],
            "predicted_max_batch": d["predicted_max_batch"],
            "kind": d["kind"]["batch_size_bound"], "notes": d["notes"],
            "limit_B_bar_S": d["limit_batch_size_bound"],
            "expected_S1": d["expected_S1"], "expected_S2": d["expected_S2"]}


def cached_predictions(out: str, specs, ds, loss: str, *, delta: float = 1.0,
                       progress: bool = False) -> dict:
    """``{arch_id: prediction}`` for every net, from ``OUT/theory/`` where the fingerprint and
    δ match, else computed (and stored atomically)."""
    from ._families import arch_id

    fp = theory_fingerprint()
    out_dir = os.path.join(out, "theory")
    preds = {}
    todo = []
    for spec in specs:
        path = os.path.join(out_dir, f"{arch_id(spec)}.json")
        if os.path.exists(path):
            rec = read_json(path)
            if rec.get("fingerprint") == fp and rec.get("delta") == delta and \
                    rec.get("loss") == loss:
                preds[arch_id(spec)] = _current_names(rec["prediction"])
                continue
        todo.append((spec, path))
    if todo:
        from tqdm import tqdm

        for spec, path in tqdm(todo, desc="theory", unit="net", disable=not progress):
            pred = theory_prediction(spec, ds, loss, delta=delta)
            write_json_atomic(path, {"fingerprint": fp, "delta": delta, "loss": loss,
                                     "arch_id": arch_id(spec), "prediction": pred})
            preds[arch_id(spec)] = pred
    return preds


def _current_names(pred: dict) -> dict:
    """A cached prediction under the current key names (files written before the names were
    unified say ``batch_size_bound`` for ``B_bar_S``; experiments/README.md, "Vocabulary")."""
    old = {"batch_size_bound": "B_bar_S", "limit_batch_size_bound": "limit_B_bar_S"}
    return {old.get(k, k): v for k, v in pred.items()}


__all__ = ["theory_prediction", "cached_predictions", "theory_fingerprint"]
