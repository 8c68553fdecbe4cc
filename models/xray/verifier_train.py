"""Train the narcotics verifier (detectors/xray/verifier.py) on a trained detector's own candidates.

`make models` runs it after the detector (models/xray/train.py); for an existing detector, with
the operating point chosen again for the pair:

    python -m models.xray.train --verifier-only [--verifier-bags 12000] [--verifier-epochs 14]
                                [--verifier-truth-bags 6000] [--verifier-members 1]

(--verifier-truth-bags N adds the simulator's truth as training crops: see TRUTH_JITTER below.
--verifier-members N averages N networks trained on the same crops, in one graph: 0.9 points
more narcotics on the calibration draw for 2, at 11 more minutes, so not the recipe's default;
MODEL_CARD.md, "More verifier on run 13's pair".)

The detector runs on a fresh simulator draw (its own seed: neither the detector's training draw,
where the detector's scores are better than anywhere else, nor the calibration or held-out ones);
every narcotics candidate it proposes becomes a full-resolution crop, labelled a narcotics block
when it overlaps one with IoU >= PD_IOU (the evaluation's own test of "found"), and with the
share of each of its 8 x 8 cells that the simulator's narcotics mask covers (net.VerifierNet's
training-only mask head learns that: where in the crop the block is, not only whether). Every one from
the detector's MIN_CANDIDATE_SCORE, although the runtime verifies only those from
verifier.MIN_VERIFIED_SCORE: the weaker half is still good training. A small CNN learns
to tell those apart. The result is written beside the detector and named, with its sha256, in the
detector's metadata; the detector's operating thresholds must be chosen again afterwards
(train.calibrate, which --verifier-only runs), because the narcotics scores are now the verifier's.

Deterministic for a seed and thread count: each bag is drawn from default_rng([seed, i]), so the
workers' split does not matter, and torch runs its deterministic algorithms.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from detectors.xray import CLASSES
from detectors.xray.evaluate import PD_IOU, iou
from detectors.xray.verifier import CHANNELS, CROP, box_features, crop_input
from models.xray.masks import MASK_SIDE, mask_target, truth_image
from models.xray.mix import VERIFIER_MIX, draw_kind
from models.xray.net import VerifierNet
from models.xray.train import finish_onnx, flip_maps, set_metadata, train_facts

VERIFIED = "narcotics"
FILE = "zastava-xray-verifier.onnx"
# A candidate that overlaps a block without reaching PD_IOU is neither a clear hit nor a clear
# miss (half a block, a box around the block and its host): left out of the loss.
AMBIGUOUS_IOU = 0.1
# The mask loss's weight beside the label's. 1.0 is the one value measured (MODEL_CARD.md, "Verifier").
MASK_WEIGHT = 1.0

# The simulator's truth as more training crops (`build(truth_bags=...)`, models/xray/truth_study.py):
# the blocks of that many narcotics bags and the look-alikes of as many clean ones, each box side
# moved by N(0, TRUTH_JITTER) of its size (as loosely as the detector places boxes), with mask
# targets. Blocks in false bottoms are left out: shown them and never an empty compartment, the
# verifier scored what lies in empty compartments higher, and the payload rule lost what it had
# found (MODEL_CARD.md, "Truth crops with masks"). The detector's score is no input then (zero in
# the data and in the exported graph): the truth's crops have none.
TRUTH_JITTER = 0.12
TRUTH_SKIP = ("false_bottom",)
TRUTH_SEED_OFFSET = 5000  # the truth crops' seed: the verifier's + this (3001 -> 8001, the study's)

_detector = None


def _bag_candidates(args: tuple[str, int, int]) -> tuple[np.ndarray, ...]:
    """One bag's narcotics candidates: crops, box features, labels, loss weights, mask targets."""
    from detectors.xray.detector import MIN_CANDIDATE_SCORE, load_detector
    from hw_sim.xray.scene import make_bag

    global _detector
    path, seed, i = args
    if _detector is None:  # one session per worker process
        _detector = load_detector(path, "zastava", thresholds={c: MIN_CANDIDATE_SCORE for c in CLASSES},
                                  verifier=False)
    rng = np.random.default_rng([seed, i])
    bag = make_bag(rng, contraband=draw_kind(rng, VERIFIER_MIX))
    found = [f for f in _detector.detect(bag.high, bag.low) if f.cls == VERIFIED]
    blocks = [o for o in bag.objects if o.cls == VERIFIED]
    gt = np.array([o.box for o in blocks], np.float64).reshape(-1, 4)
    truth = truth_image(blocks, bag.high.shape)
    crops = np.zeros((len(found), CHANNELS, CROP, CROP), np.float16)
    masks = np.zeros((len(found), MASK_SIDE, MASK_SIDE), np.float16)
    boxes = np.array([f.box for f in found], np.float32).reshape(-1, 4)
    scores = np.array([f.score for f in found], np.float32)
    best = iou(boxes.astype(np.float64), gt).max(axis=1) if len(gt) and len(found) else np.zeros(len(found))
    for k, f in enumerate(found):
        crop_input(bag.high, bag.low, f.box, out=crops[k])
        masks[k] = mask_target(truth, f.box)
    labels = (best >= PD_IOU).astype(np.float32)
    weights = np.where((labels == 0) & (best > AMBIGUOUS_IOU), 0.0, 1.0).astype(np.float32)
    return crops, box_features(boxes, scores), labels, weights, masks


def collect(detector: Path, seed: int, bags: int, workers: int = 2, progress: bool = True) -> dict[str, np.ndarray]:
    """Every narcotics candidate of `bags` simulator bags, in bag order."""
    parts = []
    t0 = time.monotonic()
    jobs = [(str(detector), seed, i) for i in range(bags)]
    with get_context("fork").Pool(workers) as pool:
        for k, part in enumerate(pool.imap(_bag_candidates, jobs, chunksize=16)):
            parts.append(part)
            if progress and (k + 1) % 1000 == 0:
                print(f"  verifier bags {k + 1}/{bags}  {(k + 1) / (time.monotonic() - t0):.1f}/s", file=sys.stderr)
    names = ("crops", "feats", "labels", "weights", "masks")
    return {name: np.concatenate([p[j] for p in parts]) for j, name in enumerate(names)}


def train(data: dict[str, np.ndarray], epochs: int, seed: int, threads: int = 2, batch: int = 64,
          lr: float = 2e-3, progress: bool = True, focal_gamma: float = 0.0) -> tuple[VerifierNet, dict]:
    """The label's loss on every crop (ambiguous ones weighted 0), plus MASK_WEIGHT times the mask
    head's on every crop when `data` has "masks" (truth_study's crops have none).

    focal_gamma > 0: the label's loss of each crop times (1 - p_t)^gamma, p_t the probability the
    network gives its true label (the focal loss of RetinaNet). Why try it: the operating point is
    set by the few clean-bag candidates the verifier scores highest, and the plain loss spends most
    of its weight on the many easy ones. 0, the recipe, is the plain loss."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    X, A, Y, W = data["crops"], data["feats"], data["labels"], data["weights"]
    masks = data.get("masks")
    if not len(Y):
        raise ValueError("the detector proposed no narcotics candidates on this draw: nothing to train a verifier on")
    net = VerifierNet().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = max(len(Y) // batch, 1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps * epochs, pct_start=0.15)
    rng = np.random.default_rng(seed + 1)
    history = []
    t0 = time.monotonic()
    for ep in range(epochs):
        t_ep = time.monotonic()
        net.train()
        perm = rng.permutation(len(Y))
        total = total_mask = 0.0
        for b in range(steps):
            idx = np.sort(perm[b * batch:(b + 1) * batch])
            fx, fy = rng.random(len(idx)) < 0.5, rng.random(len(idx)) < 0.5
            xt = torch.from_numpy(flip_maps(X[idx].astype(np.float32), fx, fy)).contiguous(
                memory_format=torch.channels_last)
            logit, mask_logit = net.forward_with_mask(xt, torch.from_numpy(A[idx]))
            y = torch.from_numpy(Y[idx])
            per_crop = F.binary_cross_entropy_with_logits(logit, y, reduction="none")
            if focal_gamma:
                p = torch.sigmoid(logit)
                per_crop = per_crop * (1.0 - torch.where(y > 0.5, p, 1.0 - p)).pow(focal_gamma)
            loss = (per_crop * torch.from_numpy(W[idx])).mean()
            total += loss.item()
            if masks is not None:
                m = flip_maps(masks[idx].astype(np.float32), fx, fy)
                mask_loss = F.binary_cross_entropy_with_logits(mask_logit, torch.from_numpy(m))
                total_mask += mask_loss.item()
                loss = loss + MASK_WEIGHT * mask_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        history.append({"epoch": ep + 1, "loss": round(total / steps, 4), "mask_loss": round(total_mask / steps, 4),
                        "seconds": round(time.monotonic() - t_ep, 2)})
        if progress:
            print(f"  verifier epoch {ep + 1}/{epochs} loss {total / steps:.4f} mask {total_mask / steps:.4f} {(time.monotonic() - t0) / 60:.1f} min",
                  file=sys.stderr)
    facts = {"seed": seed, "epochs": epochs, "batch": batch, "lr": lr, "threads": threads, "candidates": int(len(Y)),
             **({"focal_gamma": focal_gamma} if focal_gamma else {}),
             "mask_weight": MASK_WEIGHT if masks is not None else 0.0,
             "positives": int(Y.sum()), "ambiguous": int((W == 0).sum()), "history": history,
             "train_seconds": round(time.monotonic() - t0, 1), "torch": torch.__version__}
    return net.eval(), facts


def export(net: VerifierNet | list[VerifierNet], path: Path, facts: dict, ignore_score: bool = False) -> str:
    """One ONNX file whatever the number of networks: several (build's members) are averaged
    inside the graph, so the runtime (detectors/xray/verifier.py) runs one session and knows
    nothing of ensembles."""
    nets = [n.to(memory_format=torch.contiguous_format).eval() for n in (net if isinstance(net, list) else [net])]
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(_Probability(nets, ignore_score), (torch.zeros(2, CHANNELS, CROP, CROP), torch.zeros(2, 3)),
                          str(tmp),
                          input_names=["crop", "box"], output_names=["p"], opset_version=17, dynamo=False,
                          dynamic_axes={"crop": {0: "n"}, "box": {0: "n"}, "p": {0: "n"}})
    return finish_onnx(tmp, path, {"verifies": VERIFIED, "producer": "models/xray/verifier_train.py",
                                   "train": train_facts(facts)})


class _Probability(torch.nn.Module):
    """The exported graph: the mean of the networks' probabilities. ignore_score: the box input's
    first column (the detector's score) is multiplied by zero, as it was in training, so the
    runtime's layout stays [N, 3]."""

    def __init__(self, nets: list[VerifierNet], ignore_score: bool = False):
        super().__init__()
        # one network keeps its attribute name, no buffer and no Mul: the file is byte for byte
        # the one written before ensembles and the option (a renamed module or a buffer alone
        # renumbers the graph's initializers)
        self.net = nets[0]
        self.more = torch.nn.ModuleList(nets[1:]) if len(nets) > 1 else None
        self.ignore_score = ignore_score
        if ignore_score:
            self.register_buffer("keep", torch.tensor([0.0, 1.0, 1.0]))

    def forward(self, crop: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        box = box * self.keep if self.ignore_score else box
        p = torch.sigmoid(self.net(crop, box))
        if self.more is None:
            return p
        for net in self.more:
            p = p + torch.sigmoid(net(crop, box))
        return p / (1 + len(self.more))


def link(detector: Path, verifier: Path, sha256: str) -> None:
    """Name the verifier (a file beside the detector) and its sha256 in the detector's metadata."""
    set_metadata(detector, {"verifier": json.dumps({"file": verifier.name, "sha256": sha256}, sort_keys=True)})


def with_truth(data: dict[str, np.ndarray], truth_bags: int, seed: int, workers: int = 2) -> dict[str, np.ndarray]:
    """The candidates followed by the truth's crops (TRUTH_JITTER, TRUTH_SKIP left out), the
    detector's score zeroed in all of them."""
    from models.xray.truth_study import collect as truth_crops

    t = truth_crops(truth_bags, TRUTH_JITTER, seed + TRUTH_SEED_OFFSET, workers, skip_places=TRUTH_SKIP)
    feats = data["feats"].copy()
    feats[:, 0] = 0.0
    data = {**data, "feats": feats}
    return {k: np.concatenate([v, t[k]]) for k, v in data.items()}


# Member k of an ensemble trains with the verifier's seed + k * MEMBER_SEED_STEP (member 0 is the
# single verifier of before): other initial weights, other batches and flips, the same crops.
MEMBER_SEED_STEP = 301


def build(detector: Path, bags: int, epochs: int, seed: int, workers: int = 2, threads: int = 2,
          progress: bool = True, truth_bags: int = 0, members: int = 1, focal_gamma: float = 0.0) -> dict:
    """Collect, train `members` networks on the one data set, export them beside the detector as
    one graph that averages them, and link; returns the facts for train_log.json."""
    if members < 1:
        raise ValueError(f"a verifier needs at least one member network, got {members}")
    t0 = time.monotonic()
    data = collect(detector, seed, bags, workers, progress)
    if truth_bags:
        data = with_truth(data, truth_bags, seed, workers)
    t_data = time.monotonic() - t0
    nets, runs = [], []
    for k in range(members):
        net, f = train(data, epochs, seed + k * MEMBER_SEED_STEP, threads, progress=progress, focal_gamma=focal_gamma)
        nets.append(net)
        runs.append(f)
    facts = dict(runs[0])
    if members > 1:
        facts["members"] = [{"seed": f["seed"], "train_seconds": f["train_seconds"], "history": f["history"]}
                            for f in runs]
        facts["train_seconds"] = round(sum(f["train_seconds"] for f in runs), 1)
    path = detector.parent / FILE
    # only with truth crops: the recipe without them writes the same file (and sha256) as before
    truth = {"truth_bags": truth_bags, "truth_jitter": TRUTH_JITTER, "truth_skip": list(TRUTH_SKIP),
             "score_input": False} if truth_bags else {}
    sha = export(nets, path, {**facts, "bags": bags, **truth}, ignore_score=bool(truth_bags))
    link(detector, path, sha)
    facts.update({"bags": bags, "data_seconds": round(t_data, 1), "sha256": sha, "file": FILE,
                  "verifies": VERIFIED, "crop": CROP, **truth})
    return facts
