"""Train our X-ray detector from simulator bags and export it to ONNX.

    python -m models.xray.train [--bags 8000] [--epochs 13] [--batch 8] [--seed 2] [--threads 2] [--views 1]
                                [--precision auto|bf16|fp32] [--seg-weight 10] [--verifier-truth-bags 6000]
                                [--out models/xray]

Then the narcotics verifier is trained on the new detector's candidates (verifier_train.py) and
the operating thresholds are chosen for the pair (calibrate).

Deterministic for a seed and a thread count: bags are drawn from hw_sim.xray with numpy Generators
seeded from it, torch is seeded and deterministic algorithms are on. The thread count changes the
float summation order, so it is part of the recipe (recorded in the metadata and train_log.json),
and so is the precision: `--precision auto` (the default) trains the detector under bfloat16
autocast where the CPU computes bfloat16 natively (AVX512-BF16 or AMX), float32 elsewhere. The
shipped pair is the recipe's run on an AVX512-BF16 CPU (MODEL_CARD.md, "Training"): bfloat16
halves the detector's step time there, which is what brings the recipe within the hour on 2
cores; on a CPU without it oneDNN emulates bfloat16, slower than float32, and the recipe trains in
float32 (other weights; about two hours with AVX2 only). Writes zastava-xray.onnx (class names and
training facts in its metadata) and train_log.json beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from detectors.xray import CLASSES
from detectors.xray.calibration import FA_BUDGET, choose_operating_point
from detectors.xray.preprocess import model_input
from detectors.xray.verifier import file_sha256
from models.xray.mix import MIX, draw_kind
from models.xray.net import ExportWrapper, XrayNet

INPUT_HW = (224, 320)
STRIDE = 4
GRID_HW = (INPUT_HW[0] // STRIDE, INPUT_HW[1] // STRIDE)
OUT = Path(__file__).resolve().parent
SINGLE_ENERGY_SHARE = 0.08  # some single-energy inputs so the model works on single-energy scanners
# Narcotics hiding places, by how often training draws them: run 4 found narcotics in bottles and
# double walls (0.90, 0.87 on the held-out set) and hardly anywhere else, so the hard places are
# drawn more often (the held-out and calibration draws keep the simulator's own uniform choice).
NARCOTICS_PLACES = {"lining": 1.5, "false_bottom": 1.2, "double_wall": 0.5, "electronics": 1.5, "shoe": 1.5,
                    "bottle": 0.5, "under_items": 1.5}
# The ordinary items a narcotics finding on a clean bag most often sits on (MODEL_CARD.md, "Where it
# fails": books, food, clothes, toiletries, bottles, shoes, laptops), in the order of the
# segmentation head's extra maps when --items-weight is given.
ITEM_KINDS = ("book", "food", "clothes", "toiletries", "bottle", "shoes", "laptop")


def native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bfloat16 natively (x86 flags avx512_bf16 or amx_bf16). Read from
    /proc/cpuinfo rather than asked of torch, whose oneDNN reports bfloat16 "supported" wherever it
    can emulate it; elsewhere than Linux, assume not."""
    try:
        flags = cpuinfo.read_text(errors="replace").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def draw_bags(count: int, seed: int, progress: bool = True,
              items: bool = False) -> tuple[np.ndarray, list[list[tuple[int, list[float]]]], np.ndarray]:
    """count bags from the simulator -> (inputs [N,3,H,W] float16, boxes per bag in input pixels,
    the share of each grid cell that each class's objects cover [N,C,gh,gw] float16). items: the
    last array also holds, after the classes, the share each of ITEM_KINDS covers (from the
    simulator's exact item masks); the bags and the rest are the same either way."""
    import cv2

    from hw_sim.xray.scene import make_bag

    rng = np.random.default_rng(seed)
    places = list(NARCOTICS_PLACES)
    place_p = np.array(list(NARCOTICS_PLACES.values()))
    place_p = place_p / place_p.sum()
    xs = np.zeros((count, 3, *INPUT_HW), np.float16)
    segs = np.zeros((count, len(CLASSES) + (len(ITEM_KINDS) if items else 0), *GRID_HW), np.float16)
    targets = []
    t0 = time.monotonic()
    for i in range(count):
        kind = draw_kind(rng, MIX)
        place = None
        if kind == "narcotics":
            place = places[int(rng.choice(len(places), p=place_p))]
        bag = make_bag(rng, contraband=kind, place=place)
        single = rng.random() < SINGLE_ENERGY_SHARE
        xs[i] = model_input(bag.high, None if single else bag.low, INPUT_HW)[0]
        sy, sx = INPUT_HW[0] / bag.high.shape[0], INPUT_HW[1] / bag.high.shape[1]
        objs = []
        for o in bag.objects:
            x1, y1, x2, y2 = (float(v) for v in o.box)
            c = CLASSES.index(o.cls)
            objs.append((c, [x1 * sx, y1 * sy, x2 * sx, y2 * sy]))
            cover = cv2.resize(o.mask.astype(np.float32), GRID_HW[::-1], interpolation=cv2.INTER_AREA)
            segs[i, c] = np.maximum(segs[i, c], cover)
        if items:
            item_cover(bag, segs[i, len(CLASSES):])
        targets.append(objs)
        if progress and (i + 1) % 250 == 0:
            print(f"  bags {i + 1}/{count}  {(i + 1) / (time.monotonic() - t0):.1f}/s", file=sys.stderr)
    return xs, targets, segs


def item_cover(bag, out: np.ndarray) -> None:
    """Into out [len(ITEM_KINDS), gh, gw]: the share of each grid cell each kind of item covers."""
    import cv2

    full = np.zeros(bag.high.shape, np.float32)
    for k, kind in enumerate(ITEM_KINDS):
        mine = [(b, m) for (name, b), m in zip(bag.items, bag.item_masks, strict=True) if name == kind]
        if not mine:
            continue
        full[:] = 0.0
        for (x1, y1, x2, y2), m in mine:
            region = full[y1:y2, x1:x2]
            np.maximum(region, m, out=region)
        out[k] = cv2.resize(full, GRID_HW[::-1], interpolation=cv2.INTER_AREA)


def encode(objs: list[tuple[int, list[float]]], flip_x: bool, flip_y: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets on the stride-4 grid: Gaussian centre heat per class, ltrb distances and their weight."""
    gh, gw = GRID_HW
    H, W = INPUT_HW
    heat = np.zeros((len(CLASSES), gh, gw), np.float32)
    ltrb = np.zeros((4, gh, gw), np.float32)
    wgt = np.zeros((gh, gw), np.float32)
    ys = (np.arange(gh, dtype=np.float32) + 0.5) * STRIDE
    xs = (np.arange(gw, dtype=np.float32) + 0.5) * STRIDE
    # big boxes first so that small ones win the regression target where they overlap
    for c, (x1, y1, x2, y2) in sorted(objs, key=lambda o: -(o[1][2] - o[1][0]) * (o[1][3] - o[1][1])):
        if flip_x:
            x1, x2 = W - x2, W - x1
        if flip_y:
            y1, y2 = H - y2, H - y1
        bw, bh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        sx, sy = max(bw / 6.0, STRIDE * 0.6), max(bh / 6.0, STRIDE * 0.6)
        g = np.exp(-((xs[None, :] - cx) ** 2) / (2 * sx**2) - ((ys[:, None] - cy) ** 2) / (2 * sy**2))
        # the peak cell is exactly 1 (the focal loss's positive)
        pj, pi = min(int(cx // STRIDE), gw - 1), min(int(cy // STRIDE), gh - 1)
        g = g / max(g[pi, pj], 1e-6)
        heat[c] = np.maximum(heat[c], np.minimum(g, 1.0))
        inside = (xs[None, :] > x1) & (xs[None, :] < x2) & (ys[:, None] > y1) & (ys[:, None] < y2)
        reg = inside & (g > 0.3)
        reg[pi, pj] = True
        ltrb[0][reg] = (xs[None, :] - x1).repeat(gh, 0)[reg]
        ltrb[1][reg] = (ys[:, None] - y1).repeat(gw, 1)[reg]
        ltrb[2][reg] = (x2 - xs[None, :]).repeat(gh, 0)[reg]
        ltrb[3][reg] = (y2 - ys[:, None]).repeat(gw, 1)[reg]
        wgt[reg] = np.minimum(g, 1.0)[reg]
    return heat, np.maximum(ltrb, 0.5), wgt


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), normalised by the positives."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1.0).float()
    neg = 1.0 - pos
    pos_loss = torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = torch.log(1 - p) * p**2 * (1 - target) ** 4 * neg
    npos = pos.sum().clamp(min=1.0)
    return -(pos_loss.sum() + neg_loss.sum()) / npos


def giou_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """GIoU between boxes given as ltrb distances from the same point ([N,4,h,w])."""
    pl, pt, pr, pb = pred.unbind(1)
    tl, tt, tr, tb = target.unbind(1)
    pa, ta = (pl + pr) * (pt + pb), (tl + tr) * (tt + tb)
    iw = torch.minimum(pl, tl) + torch.minimum(pr, tr)
    ih = torch.minimum(pt, tt) + torch.minimum(pb, tb)
    inter = iw * ih
    union = pa + ta - inter
    cw = torch.maximum(pl, tl) + torch.maximum(pr, tr)
    ch = torch.maximum(pt, tt) + torch.maximum(pb, tb)
    enclose = cw * ch
    giou = inter / union - (enclose - union) / enclose
    w = weight
    return ((1 - giou) * w).sum() / w.sum().clamp(min=1.0)


@dataclass
class Encoded:
    """Every bag's targets, encoded once (encoding per step cost a sixth of the training time)."""

    heat: np.ndarray  # (N, C, gh, gw) float16
    ltrb: np.ndarray  # (N, 4, gh, gw) float32
    wgt: np.ndarray  # (N, gh, gw) float16


def encode_all(targets: list[list[tuple[int, list[float]]]]) -> Encoded:
    enc = [encode(t, False, False) for t in targets]
    return Encoded(np.stack([e[0] for e in enc]).astype(np.float16), np.stack([e[1] for e in enc]),
                   np.stack([e[2] for e in enc]).astype(np.float16))


def flip_maps(maps: np.ndarray, flips_x: np.ndarray, flips_y: np.ndarray) -> np.ndarray:
    """A batch of images or maps ([N, ..., h, w], modified in place) with item k mirrored
    left-right where flips_x[k] and top-bottom where flips_y[k] (boolean arrays); contiguous.
    The one flip the detector's and the verifier's training apply to their inputs and targets."""
    maps[flips_x] = maps[flips_x][..., ::-1]
    maps[flips_y] = maps[flips_y][..., ::-1, :]
    return np.ascontiguousarray(maps)


def batch_targets(enc: Encoded, idx, flips_x, flips_y):
    """The bags' targets with the flips applied to the arrays: a mirrored box has its centre heat
    mirrored and its left and right (top and bottom) distances swapped. Cell centres are
    symmetric, so this equals encoding the mirrored boxes (up to the peak cell of a centre
    that falls exactly on a cell edge)."""
    fx, fy = np.asarray(flips_x, bool), np.asarray(flips_y, bool)
    heat = flip_maps(enc.heat[idx].astype(np.float32), fx, fy)
    wgt = flip_maps(enc.wgt[idx].astype(np.float32), fx, fy)
    ltrb = flip_maps(enc.ltrb[idx], fx, fy)
    ltrb[fx] = ltrb[fx][:, [2, 1, 0, 3]]  # mirrored left-right: the left and right distances swap
    ltrb[fy] = ltrb[fy][:, [0, 3, 2, 1]]
    return torch.from_numpy(heat), torch.from_numpy(ltrb), torch.from_numpy(wgt)


def train(bags: int, epochs: int, seed: int, batch: int = 16, lr: float = 2e-3,
          progress: bool = True, threads: int = 1, checkpoint: Path | None = None,
          bf16: bool = False, seg_weight: float = 0.0, items_weight: float = 0.0) -> tuple[XrayNet, dict]:
    """Draw the bags and train; with `checkpoint`, the weights are saved there after every epoch
    so that an hour's run interrupted near its end still leaves a usable network.

    bf16: the network's forward pass under torch's CPU autocast to bfloat16 (weights, optimiser
    and losses stay float32). On a CPU with AVX512-BF16 a step takes half the time (212 -> 103 ms
    for a batch of 8 here); elsewhere oneDNN emulates it, slower than float32.

    seg_weight: weight of the training-only segmentation head's loss (XrayNet.forward_with_seg):
    each class's share of each grid cell, from the simulator's masks. 10 in the recipe (run 11):
    held-out narcotics 0.865 -> 0.889 with its verifier (MODEL_CARD.md, "Network").
    0 trains without it, as run 6 was.

    items_weight: the same head also learns which cells each of ITEM_KINDS covers (books, food,
    clothes...), with this weight. Why: the narcotics findings on clean bags sit on those items,
    and the class maps alone never say what a region is when it is not contraband; naming the
    clutter gives the shared features a reason to tell a brick from a book (MODEL_CARD.md, run 16).
    0 (the recipe): the head has the class maps only, and the weights are those of run 13."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    t0 = time.monotonic()
    xs, targets, segs = draw_bags(bags, seed, progress, items=items_weight > 0)
    enc = encode_all(targets)
    t_data = time.monotonic() - t0
    # channels-last: onednn's convolutions on the CPU are ~20 % faster with it (measured here)
    net = XrayNet(len(CLASSES), seg_extra=len(ITEM_KINDS) if items_weight else 0).to(
        memory_format=torch.channels_last)
    with_seg = bool(seg_weight or items_weight)
    nc = len(CLASSES)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = bags // batch
    total = steps_per_epoch * epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.15)
    order_rng = np.random.default_rng(seed + 1)
    history = []
    step = 0
    for ep in range(epochs):
        t_ep = time.monotonic()
        net.train()
        perm = order_rng.permutation(bags)
        sums = np.zeros(2)
        seg_sum = items_sum = 0.0
        for b in range(steps_per_epoch):
            idx = perm[b * batch:(b + 1) * batch]
            fx = order_rng.random(len(idx)) < 0.5
            fy = order_rng.random(len(idx)) < 0.5
            x = torch.from_numpy(flip_maps(xs[idx].astype(np.float32), fx, fy)).contiguous(
                memory_format=torch.channels_last)
            heat_t, ltrb_t, w_t = batch_targets(enc, idx, fx, fy)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                if with_seg:
                    logits, ltrb, seg = net.forward_with_seg(x)
                else:
                    logits, ltrb = net(x)
            logits, ltrb = logits.float(), ltrb.float()
            lh = focal_loss(logits, heat_t)
            lb = giou_loss(ltrb, ltrb_t, w_t)
            loss = lh + 2.0 * lb
            if with_seg:
                seg, seg_t = seg.float(), torch.from_numpy(flip_maps(segs[idx].astype(np.float32), fx, fy))
            if seg_weight:
                ls = F.binary_cross_entropy_with_logits(seg[:, :nc], seg_t[:, :nc])
                loss = loss + seg_weight * ls
                seg_sum += ls.item()
            if items_weight:
                li = F.binary_cross_entropy_with_logits(seg[:, nc:], seg_t[:, nc:])
                loss = loss + items_weight * li
                items_sum += li.item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            sums += (lh.item(), lb.item())
            if progress and step % 50 == 0:
                el = time.monotonic() - t0
                print(f"  epoch {ep + 1}/{epochs} step {step}/{total} heat {lh.item():.3f} box {lb.item():.3f} "
                      f"{el / 60:.1f} min", file=sys.stderr)
        history.append({"epoch": ep + 1, "heat_loss": round(sums[0] / steps_per_epoch, 4),
                        "box_loss": round(sums[1] / steps_per_epoch, 4),
                        "seconds": round(time.monotonic() - t_ep, 2)}
                       | ({"seg_loss": round(seg_sum / steps_per_epoch, 4)} if seg_weight else {})
                       | ({"items_loss": round(items_sum / steps_per_epoch, 4)} if items_weight else {}))
        if checkpoint is not None:
            torch.save({"epoch": ep + 1, "state_dict": net.state_dict(), "history": history}, checkpoint)
    facts = {"seed": seed, "bags": bags, "epochs": epochs, "batch": batch, "lr": lr, "mix": {str(k): v for k, v in MIX.items()},
             "narcotics_places": NARCOTICS_PLACES,
             "single_energy_share": SINGLE_ENERGY_SHARE, "input_hw": list(INPUT_HW), "stride": STRIDE,
             "data_seconds": round(t_data, 1), "train_seconds": round(time.monotonic() - t0 - t_data, 1),
             "torch": torch.__version__, "threads": threads, "bf16": bf16, "seg_weight": seg_weight,
             "history": history} | ({"items_weight": items_weight, "item_kinds": list(ITEM_KINDS)} if items_weight else {})
    return net, facts


def export(net: XrayNet, path: Path, facts: dict, views: int = 1) -> str:
    """Write the ONNX file with class names and the training facts in its metadata; return sha256.
    views > 1: the graph averages the bag with its flips (ExportWrapper)."""
    net = net.to(memory_format=torch.contiguous_format).eval()
    wrapper = ExportWrapper(net, views)
    dummy = torch.zeros(1, 3, *INPUT_HW)
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():
        # the TorchScript exporter: the newer dynamo one needs onnxscript, which we do not ship
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(wrapper, (dummy,), str(tmp), input_names=["input"], output_names=["heat", "ltrb"],
                          opset_version=17, dynamo=False)
    return finish_onnx(tmp, path, {"class_names": json.dumps(list(CLASSES)), "layout": "zastava",
                                   "producer": "models/xray/train.py", "train": train_facts(facts)})


def train_facts(facts: dict) -> str:
    """The training facts as the ONNX metadata carries them: the loss histories, the run's and an
    ensemble's members' (verifier_train.build), stay in train_log.json."""
    def brief(d: dict) -> dict:
        return {k: [brief(m) for m in v] if k == "members" else v for k, v in d.items() if k != "history"}

    return json.dumps(brief(facts), sort_keys=True)


def finish_onnx(tmp: Path, path: Path, meta: dict[str, str]) -> str:
    """The exported graph at `tmp` with `meta` in its metadata, checked and saved as `path`;
    returns its sha256."""
    import onnx

    m = onnx.load(str(tmp))
    for k, v in meta.items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    m.producer_name = "zastava"
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    tmp.unlink()
    return file_sha256(path)


def set_metadata(path: Path, meta: dict[str, str]) -> None:
    """Write these keys into a saved ONNX file's metadata, replacing any it has under them."""
    import onnx

    m = onnx.load(str(path))
    for e in list(m.metadata_props):
        if e.key in meta:
            m.metadata_props.remove(e)
    for k, v in meta.items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(m, str(path))


# The calibration draw: half of it clean bags, the rest by MIX's contraband shares. The false-alarm
# rate is what the budget binds, and it is estimated on the clean bags: with MIX's quarter clean,
# 2000 bags gave ~510 of them, a sampling error of about +-0.007 on a budget of 0.025.
CALIBRATION_CLEAN_SHARE = 0.5


# The false-alarm budget the thresholds are chosen for, a third under the 0.03. Two
# margins: the draw's sampling error (about +-0.0035 with 2000 clean bags), and the choice itself,
# which picks among thousands of threshold combinations the one that detects most within the
# budget, and so favours those whose false alarms the draw happens to undercount. Calibrated to
# 0.025, run 6 gave 0.029 and run 6 with its verifier 0.035 on the first held-out set
# (MODEL_CARD.md, "Operating point"): the figures are now taken on a second, fresh held-out set.


def calibrate(path: Path, seed: int, bags: int = 4000, fa_per_clean_bag: float = FA_BUDGET,
              progress: bool = True) -> tuple[dict[str, float], dict]:
    """Choose the operating thresholds on a validation draw (its own seed, never the training one
    nor the held-out test's): choose_thresholds with a budget of `fa_per_clean_bag` for all classes
    together, a little under the issue's 0.03 to leave room for the draw's sampling error. The
    thresholds go into the ONNX metadata, where the runtime reads them."""

    from detectors.xray.detector import MIN_CANDIDATE_SCORE, load_detector
    from hw_sim.xray.scene import make_bag

    det = load_detector(path, "zastava", thresholds={c: MIN_CANDIDATE_SCORE for c in CLASSES})
    rng = np.random.default_rng(seed)
    kinds = list(MIX)
    probs = np.array([CALIBRATION_CLEAN_SHARE if k is None else v for k, v in MIX.items()])
    contraband = np.array([k is not None for k in kinds])
    probs[contraband] *= (1 - CALIBRATION_CLEAN_SHARE) / probs[contraband].sum()
    per_bag, truths = [], []
    for i in range(bags):
        kind = kinds[int(rng.choice(len(kinds), p=probs))]
        bag = make_bag(rng, contraband=kind)
        per_bag.append(det.detect(bag.high, bag.low))
        truths.append([(o.cls, o.box) for o in bag.objects])
        if progress and (i + 1) % 200 == 0:
            print(f"  calibration bags {i + 1}/{bags}", file=sys.stderr)
    thresholds, payload, facts = choose_operating_point(per_bag, truths, list(CLASSES), fa_per_clean_bag)
    facts.pop("not_in_data")
    set_metadata(path, {"thresholds": json.dumps(thresholds, sort_keys=True),
                        "payload_thresholds": json.dumps(payload, sort_keys=True)})
    return thresholds, facts


def parser() -> argparse.ArgumentParser:
    """The command line, whose defaults are the recipe (bench/bench_xray_train.py reads them)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bags", type=int, default=8000)
    ap.add_argument("--epochs", type=int, default=13)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (part of the recipe: "
                    "another count gives other weights)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=2, help="the shipped pair's is 2 (MODEL_CARD.md, \"Training\")")
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                    help="the detector's forward pass under bfloat16 autocast (twice as fast on CPUs with "
                    "AVX512-BF16, slower elsewhere) or float32; auto: bf16 where the CPU has it natively. Part "
                    "of the recipe: the two give other weights")
    ap.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help="--precision bf16")
    ap.add_argument("--seg-weight", type=float, default=10.0, help="weight of a training-only head that "
                    "learns which cells each class covers, from the simulator's masks (0: none)")
    ap.add_argument("--items-weight", type=float, default=0.0, help="weight of the same head's maps of "
                    "where each kind of ordinary item lies (ITEM_KINDS; 0: none, the recipe)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--checkpoint", type=Path, help="save the weights here after every epoch")
    ap.add_argument("--calibrate-only", action="store_true",
                    help="only choose the operating thresholds of an existing OUT/zastava-xray.onnx")
    ap.add_argument("--calibration-bags", type=int, default=4000)
    ap.add_argument("--from-checkpoint", type=Path, help="export and calibrate the weights saved there by "
                    "--checkpoint (a run stopped near its end, or another --views), with OUT/train_log.json's facts")
    ap.add_argument("--views", type=int, choices=(1, 2, 4), default=1,
                    help="views the exported graph averages: the bag, mirrored left-right, top-bottom, both")
    ap.add_argument("--no-verifier", action="store_true", help="ship the detector alone (no narcotics verifier)")
    ap.add_argument("--verifier-only", action="store_true",
                    help="train the verifier for an existing OUT/zastava-xray.onnx, then calibrate the pair")
    ap.add_argument("--verifier-bags", type=int, default=12000)
    ap.add_argument("--verifier-epochs", type=int, default=14)
    ap.add_argument("--verifier-members", type=int, default=1, help="verifiers trained on the same crops with "
                    "other seeds, averaged in the one exported graph (verifier_train.build)")
    ap.add_argument("--verifier-focal", type=float, default=0.0, help="the verifier's label loss as a focal "
                    "loss with this gamma (verifier_train.train; 0: the plain loss, the recipe)")
    ap.add_argument("--verifier-truth-bags", type=int, default=6000, help="also train the verifier on the "
                    "simulator's truth: the blocks of this many narcotics bags and the look-alikes of as many "
                    "clean ones (verifier_train.with_truth; 0: candidates only, the recipe before run 12)")
    return ap


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    bf16 = a.precision == "bf16" or (a.precision == "auto" and native_bf16())
    if not (a.quiet or a.calibrate_only or a.verifier_only or a.from_checkpoint):
        why = "asked" if a.precision != "auto" else "the CPU has it natively" if bf16 else "no native bfloat16"
        print(f"detector in {'bfloat16 autocast' if bf16 else 'float32'} ({why})", file=sys.stderr)
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / "zastava-xray.onnx"
    log_path = a.out / "train_log.json"
    if a.calibrate_only or a.verifier_only:
        facts = json.loads(log_path.read_text()) if log_path.exists() else {"seed": a.seed}
    elif a.from_checkpoint:
        saved = torch.load(a.from_checkpoint, weights_only=False)
        facts = json.loads(log_path.read_text()) if log_path.exists() else {"seed": a.seed}
        facts = {k: v for k, v in facts.items() if k not in ("calibration", "sha256")}
        facts.setdefault("history", saved["history"])
        net = XrayNet(len(CLASSES), seg_extra=len(ITEM_KINDS) if facts.get("items_weight") else 0)
        net.load_state_dict(saved["state_dict"])
        facts["views"] = a.views
        export(net, path, facts, a.views)
    else:
        net, facts = train(a.bags, a.epochs, a.seed, batch=a.batch, lr=a.lr, progress=not a.quiet,
                           threads=a.threads, checkpoint=a.checkpoint, bf16=bf16, seg_weight=a.seg_weight,
                           items_weight=a.items_weight)
        facts["views"] = a.views
        export(net, path, facts, a.views)
    if a.verifier_only or not (a.calibrate_only or a.no_verifier):
        from models.xray import verifier_train

        facts["verifier"] = verifier_train.build(path, a.verifier_bags, a.verifier_epochs, facts["seed"] + 3000,
                                                 threads=a.threads, progress=not a.quiet,
                                                 truth_bags=a.verifier_truth_bags, members=a.verifier_members,
                                                 focal_gamma=a.verifier_focal)
    elif a.no_verifier and not a.calibrate_only:  # a fresh export names no verifier
        facts.pop("verifier", None)
    t0 = time.monotonic()
    thresholds, on_draw = calibrate(path, facts["seed"] + 1000, a.calibration_bags, progress=not a.quiet)
    facts["calibration"] = {"seed": facts["seed"] + 1000, "bags": a.calibration_bags,
                            "clean_share": CALIBRATION_CLEAN_SHARE, "thresholds": thresholds,
                            "payload_thresholds": on_draw["payload"]["by_class"] and
                            {c: v["threshold"] for c, v in on_draw["payload"]["by_class"].items()},
                            "on_calibration_draw": on_draw, "seconds": round(time.monotonic() - t0, 1)}
    sha = file_sha256(path)
    facts["sha256"] = sha
    log_path.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    took = f"; train {facts['train_seconds'] / 60:.1f} min, data {facts['data_seconds'] / 60:.1f} min" \
        if "train_seconds" in facts else ""
    if "verifier" in facts:
        v = facts["verifier"]
        took += f"; verifier data {v['data_seconds'] / 60:.1f} min, train {v['train_seconds'] / 60:.1f} min"
    print(f"wrote {a.out / 'zastava-xray.onnx'} sha256 {sha}{took}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
