"""Train the RF emitter classifier and export it to ONNX: `python -m models.rf.train`.

Data: simulator captures (hw_sim.rf) through detectors.rf's own front end and channeliser
(models/rf/snippets.py), so training sees what the monitor sees. Deterministic for a seed
(numpy generators per class, torch.manual_seed, deterministic algorithms, one thread).

The network sees the RadioML-style 2xN [I; Q] input; its first layer derives the amplitude and
the sample-to-sample phase rotation (x[n] * conj(x[n-1])) inside the graph, because those are
what separate FM from AM from FSK and CNNs learn them slowly from raw I/Q. Everything is plain
ONNX ops, so onnxruntime runs it on the edge box without torch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from detectors.rf.channel import OVERSAMPLE, SNIPPET_LEN, to_model_input
from models.rf.snippets import make_set

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "zastava-rf.onnx"
CACHE = Path.home() / ".cache" / "zastava" / "rf-snippets"


def build_model(n_classes: int):
    import torch
    from torch import nn

    class Features(nn.Module):
        """[I, Q] -> [I, Q, |x|, Re(x x*[-1]), Im(x x*[-1])], computed in the graph."""

        def forward(self, x):
            i, q = x[:, 0:1], x[:, 1:2]
            amp = torch.sqrt(i * i + q * q + 1e-6)
            i0, q0 = i[:, :, :-1], q[:, :, :-1]
            i1, q1 = i[:, :, 1:], q[:, :, 1:]
            re = nn.functional.pad(i1 * i0 + q1 * q0, (1, 0))
            im = nn.functional.pad(q1 * i0 - i1 * q0, (1, 0))
            return torch.cat([i, q, amp, re, im], dim=1)

    def block(cin, cout, k):
        return nn.Sequential(nn.Conv1d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm1d(cout), nn.ReLU(),
                             nn.MaxPool1d(2))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = Features()
            self.body = nn.Sequential(block(5, 24, 7), block(24, 32, 5), block(32, 48, 5), block(48, 64, 3),
                                      block(64, 96, 3), block(96, 128, 3))
            self.head = nn.Sequential(nn.Linear(256, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, n_classes))

        def forward(self, x):
            h = self.body(self.features(x))
            h = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
            return self.head(h)

    return Net()


def _dataset(per_class: int, seed: int, log) -> dict:
    """Made once per (size, seed, code version) and cached: the simulator is the slow part."""
    src = (HERE / "snippets.py").read_bytes() + (HERE.parent.parent / "detectors/rf/channel.py").read_bytes() + \
        (HERE.parent.parent / "detectors/rf/frontend.py").read_bytes()
    key = hashlib.sha256(src + f"{per_class}-{seed}".encode()).hexdigest()[:16]
    path = CACHE / f"{key}.npz"
    if path.exists():
        d = np.load(path, allow_pickle=False)
        log(f"dataset from cache {path}")
        return {k: d[k] for k in d.files}
    t0 = time.time()
    d = make_set(per_class, seed, log=log)
    log(f"made {len(d['y'])} snippets in {time.time() - t0:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, iq=d["iq"], y=d["y"], snr=d["snr"], bw=d["bw"], classes=np.array(d["classes"]))
    return {"iq": d["iq"], "y": d["y"], "snr": d["snr"], "bw": d["bw"], "classes": np.array(d["classes"])}


def accuracy_by_snr(pred: np.ndarray, y: np.ndarray, snr: np.ndarray, step: float = 5.0) -> dict[str, float]:
    out = {}
    for lo in np.arange(-5, 30, step):
        m = (snr >= lo) & (snr < lo + step)
        if m.any():
            out[f"{int(lo)}-{int(lo + step)}"] = round(float((pred[m] == y[m]).mean()), 4)
    return out


def confusion(pred: np.ndarray, y: np.ndarray, k: int) -> list[list[int]]:
    c = np.zeros((k, k), np.int64)
    np.add.at(c, (y, pred), 1)
    return c.tolist()


def train(per_class: int = 1000, test_per_class: int = 250, epochs: int = 24, seed: int = 7, out: Path = DEFAULT_OUT,
          log=print) -> dict:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    t_start = time.time()
    tr = _dataset(per_class, seed, log)
    te = _dataset(test_per_class, seed + 1000, log)  # a different seed: held out
    classes = [str(c) for c in tr["classes"]]
    t_data = time.time() - t_start
    xtr = torch.from_numpy(to_model_input(tr["iq"]))
    ytr = torch.from_numpy(tr["y"])
    xte = torch.from_numpy(to_model_input(te["iq"]))
    model = build_model(len(classes))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * ((len(ytr) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    lossf = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(ytr), generator=gen)
        tot = 0.0
        for b in range(0, len(ytr), 64):
            idx = perm[b: b + 64]
            xb = xtr[idx]
            # a random carrier phase: the model must not care where the oscillator started
            th = torch.rand(len(idx), 1, generator=gen) * 2 * np.pi
            c, s = torch.cos(th), torch.sin(th)
            xb = torch.stack([xb[:, 0] * c - xb[:, 1] * s, xb[:, 0] * s + xb[:, 1] * c], dim=1)
            opt.zero_grad()
            loss = lossf(model(xb), ytr[idx])
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(xte[i: i + 256]).argmax(1) for i in range(0, len(xte), 256)]).numpy()
        acc = float((pred == te["y"]).mean())
        log(f"epoch {ep + 1:2d}/{epochs} loss {tot / len(ytr):.3f} held-out acc {acc:.3f} ({time.time() - t0:.0f} s)")
    t_train = time.time() - t0
    model.eval()
    export(model, classes, out, seed)
    metrics = {"classes": classes, "held_out_accuracy": round(acc, 4),
               "held_out_accuracy_snr_ge_10": round(float((pred == te["y"])[te["snr"] >= 10].mean()), 4),
               "accuracy_by_snr_db": accuracy_by_snr(pred, te["y"], te["snr"]),
               "confusion": confusion(pred, te["y"], len(classes)), "train_snippets": int(len(ytr)),
               "test_snippets": int(len(te["y"])), "seed": seed, "epochs": epochs,
               "data_s": round(t_data), "train_s": round(t_train),
               "sha256": hashlib.sha256(out.read_bytes()).hexdigest()}
    (out.parent / "metrics.json").write_text(json.dumps(metrics, indent=1))
    log(json.dumps({k: v for k, v in metrics.items() if k != "confusion"}))
    return metrics


def export(model, classes: list[str], out: Path, seed: int) -> None:
    import onnx
    import torch

    x = torch.zeros(1, 2, SNIPPET_LEN)
    tmp = out.with_suffix(".tmp.onnx")
    torch.onnx.export(model, (x,), str(tmp), dynamo=False, input_names=["iq"], output_names=["logits"],
                      dynamic_axes={"iq": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
    m = onnx.load(str(tmp))
    meta = {"classes": json.dumps(classes), "snippet_len": str(SNIPPET_LEN), "oversample": str(OVERSAMPLE),
            "input": "iq float32 [batch, 2, snippet_len]: I and Q of the channelised emitter, unit mean power",
            "trained_by": "models/rf/train.py", "seed": str(seed)}
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(m, str(out))
    tmp.unlink()


def main(argv: list[str] | None = None) -> int:
    """Defaults when called as a function (models/train_all.py); argv from the command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-class", type=int, default=1000)
    p.add_argument("--test-per-class", type=int, default=250)
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = p.parse_args(argv if argv is not None else [])
    train(a.per_class, a.test_per_class, a.epochs, a.seed, a.out)
    if a.out == DEFAULT_OUT:  # the shipped model: refresh its card from the new figures
        from models.rf.card import main as write_card

        write_card([])
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
