"""X-ray training recipe benchmark: how long `make models` (python -m models.xray.train with its
defaults) takes on this machine, projected from short runs of each stage, and each training step
beside a bare torch step of the same network on the same batch shape, in the same run.

Why projected: the recipe itself takes most of an hour (MODEL_CARD.md, "Training"), too long for a
benchmark. Each stage here is the recipe's own code on fewer bags or epochs; its time per bag or
per step, times the recipe's counts (train.parser()'s defaults), gives the stage's minutes:

  bag data             train.draw_bags + encode_all, per bag              x --bags
  detector steps       train.train's second epoch (the first warms up),   x bags / batch x --epochs
                       in float32 and under bfloat16 autocast (--precision auto picks bfloat16
                       where the CPU has it natively: the figure that applies is marked)
  verifier data        verifier_train.collect with the shipped detector,  x --verifier-bags
                       then with_truth's crops, per pair of bags          x --verifier-truth-bags
  verifier steps       verifier_train.train's second epoch                x crops / batch x epochs
  calibration          train.calibrate on a copy of the shipped pair      x --calibration-bags

The crops the verifier trains on are counted from the sample (candidates per bag of the shipped
detector: a new detector proposes about as many). The bare steps are the network's forward, a
plain loss, backward and the AdamW step on random input: what our loop adds is the flips, the
targets and the real losses.

Usage: python bench/bench_xray_train.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

try:
    import torch
except ImportError:  # `make bench` installs the dev extra only; torch comes with `make models`
    torch = None
else:
    from models.xray import train, verifier_train
    from models.xray.net import VerifierNet, XrayNet

SHIPPED = HERE.parent / "models" / "xray"
EPOCHS = 4  # of each network's short run; the first warms up


def steady(history: list[dict]) -> float:
    """Seconds of the median epoch after the first."""
    return float(np.median([h["seconds"] for h in history[1:]]))


def bare_steps(net: torch.nn.Module, inputs: tuple[torch.Tensor, ...], steps: int, bf16: bool,
               forward) -> float:
    """Seconds a step, on the mean as an epoch's time is: forward (under autocast if bf16), the mean
    of every output, backward, AdamW."""
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    net.train()
    times = []
    for k in range(steps + 3):  # three to warm up
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outs = forward(net, *inputs)
        loss = sum(o.float().mean() for o in outs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k >= 3:
            times.append(time.perf_counter() - t0)
    return float(np.mean(times))


def detector_stage(recipe, bags: int, bf16: bool) -> dict:
    """The recipe's train() on `bags` bags: data per bag, and a step's time from the median epoch
    after the first (which warms up; the median, because a shared machine slows some epochs)."""
    _, facts = train.train(bags, EPOCHS, recipe.seed, batch=recipe.batch, lr=recipe.lr, progress=False,
                           threads=recipe.threads, bf16=bf16, seg_weight=recipe.seg_weight)
    steps = bags // recipe.batch
    torch.manual_seed(0)
    net = XrayNet(len(train.CLASSES)).to(memory_format=torch.channels_last)
    x = torch.rand(recipe.batch, 3, *train.INPUT_HW).contiguous(memory_format=torch.channels_last)
    fwd = (lambda n, x: n.forward_with_seg(x)) if recipe.seg_weight else (lambda n, x: n(x))
    return {"data_s_per_bag": facts["data_seconds"] / bags,
            "step_s": steady(facts["history"]) / steps,
            "bare_step_s": bare_steps(net, (x,), max(10, steps), bf16, fwd), "steps_timed": steps * (EPOCHS - 1)}


def verifier_stage(recipe, bags: int, truth_bags: int, workdir: Path) -> dict:
    det = workdir / "zastava-xray.onnx"
    seed = recipe.seed + 3000
    t0 = time.monotonic()
    data = verifier_train.collect(det, seed, bags, progress=False)
    t_collect = time.monotonic() - t0
    candidates = len(data["labels"])
    t0 = time.monotonic()
    data = verifier_train.with_truth(data, truth_bags, seed)
    t_truth = time.monotonic() - t0
    _, facts = verifier_train.train(data, EPOCHS, seed, recipe.threads, progress=False)
    steps = max(len(data["labels"]) // facts["batch"], 1)
    torch.manual_seed(0)
    net = VerifierNet().to(memory_format=torch.channels_last)
    crop = torch.rand(facts["batch"], verifier_train.CHANNELS, verifier_train.CROP,
                      verifier_train.CROP).contiguous(memory_format=torch.channels_last)
    box = torch.rand(facts["batch"], 3)
    return {"collect_s_per_bag": t_collect / bags, "candidates_per_bag": candidates / bags,
            "truth_s_per_bag": t_truth / truth_bags, "truth_crops_per_bag": (len(data["labels"]) - candidates) / truth_bags,
            "batch": facts["batch"], "step_s": steady(facts["history"]) / steps,
            "bare_step_s": bare_steps(net, (crop, box), max(10, steps), False,
                                      lambda n, c, b: n.forward_with_mask(c, b)), "steps_timed": steps * (EPOCHS - 1)}


def calibration_stage(recipe, bags: int, workdir: Path) -> dict:
    t0 = time.monotonic()
    train.calibrate(workdir / "zastava-xray.onnx", recipe.seed + 1000, bags, progress=False)
    return {"s_per_bag": (time.monotonic() - t0) / bags}


def shipped_minutes() -> tuple[dict[str, float], bool]:
    """The stage times the shipped pair's own run recorded (models/xray/train_log.json), in
    minutes, under this benchmark's stage names (what the projection can be held against), and
    whether it trained under bfloat16."""
    log = json.loads((SHIPPED / "train_log.json").read_text())
    v, c = log.get("verifier", {}), log.get("calibration", {})
    out = {"bag data": log.get("data_seconds"), "detector training": log.get("train_seconds"),
           "verifier data": v.get("data_seconds"), "verifier training": v.get("train_seconds"),
           "calibration": c.get("seconds")}
    return {k: round(s / 60, 2) for k, s in out.items() if s is not None}, bool(log.get("bf16"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer bags a stage (noisier)")
    a = ap.parse_args(argv)
    (HERE / "results").mkdir(exist_ok=True)
    if torch is None:
        why = "torch is not installed (the `train` extra, which `make models` installs)"
        print(f"X-ray training recipe: skipped, {why}")
        (HERE / "results" / "xray_train.json").write_text(json.dumps({"bench": "xray_train", "skipped": why}) + "\n")
        return 0
    recipe = train.parser().parse_args([])
    torch.set_num_threads(recipe.threads)
    n_det, n_ver, n_truth, n_cal = (48, 40, 20, 30) if a.quick else (240, 200, 100, 120)
    native = train.native_bf16()
    t_start = time.monotonic()
    det = {p: detector_stage(recipe, n_det, p == "bf16") for p in ("fp32", "bf16")}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for f in ("zastava-xray.onnx", verifier_train.FILE):
            shutil.copy(SHIPPED / f, work / f)
        ver = verifier_stage(recipe, n_ver, n_truth, work)
        cal = calibration_stage(recipe, n_cal, work)

    steps = recipe.bags // recipe.batch * recipe.epochs
    v_crops = ver["candidates_per_bag"] * recipe.verifier_bags + ver["truth_crops_per_bag"] * recipe.verifier_truth_bags
    v_steps = int(v_crops // ver["batch"]) * recipe.verifier_epochs
    shared = {"bag data": det["fp32"]["data_s_per_bag"] * recipe.bags / 60,
              "verifier data": (ver["collect_s_per_bag"] * recipe.verifier_bags
                                + ver["truth_s_per_bag"] * recipe.verifier_truth_bags) / 60,
              "verifier training": ver["step_s"] * v_steps / 60,
              "calibration": cal["s_per_bag"] * recipe.calibration_bags / 60}
    projected = {p: {"detector training": det[p]["step_s"] * steps / 60, **shared} for p in det}
    totals = {p: sum(v.values()) for p, v in projected.items()}
    picked = "bf16" if native else "fp32"
    measured, measured_bf16 = shipped_minutes()

    print(f"X-ray training recipe (`make models`), {recipe.threads} threads, projected from short runs "
          f"(load average {os.getloadavg()[0]:.1f}; native bfloat16: {'yes' if native else 'no'})")
    print(f"{'step':<26}{'ours ms':>10}{'bare torch ms':>15}{'overhead':>10}")
    for name, r in (("detector, float32", det["fp32"]), ("detector, bfloat16", det["bf16"]), ("verifier", ver)):
        print(f"{name:<26}{r['step_s'] * 1e3:>10.1f}{r['bare_step_s'] * 1e3:>15.1f}"
              f"{(r['step_s'] / r['bare_step_s'] - 1) * 100:>+9.1f}%")
    shipped_col = f"shipped ({'bfloat16' if measured_bf16 else 'float32'})"
    print(f"\n{'stage (minutes)':<26}{'float32':>10}{'bfloat16':>10}{shipped_col:>20}")
    for k in projected["fp32"]:
        m = f"{measured[k]:.1f}" if k in measured else "-"
        print(f"{k:<26}{projected['fp32'][k]:>10.1f}{projected['bf16'][k]:>10.1f}{m:>20}")
    m = f"{sum(measured.values()):.1f}"
    print(f"{'recipe in all':<26}{totals['fp32']:>10.1f}{totals['bf16']:>10.1f}{m:>20}")
    print(f"--precision auto trains in {'bfloat16' if native else 'float32'} here: {totals[picked]:.1f} min projected. "
          "The last column is what the shipped pair's own run measured (train_log.json), on the machine "
          "that trained it")
    print(f"counts: {steps} detector steps, {v_steps} verifier steps ({v_crops:.0f} crops), "
          f"{recipe.calibration_bags} calibration bags; this run took {(time.monotonic() - t_start) / 60:.1f} min")
    out = {"bench": "xray_train", "quick": a.quick, "threads": recipe.threads, "native_bf16": native,
           "recipe_precision": picked, "projected_minutes": {p: {k: round(v, 2) for k, v in s.items()}
                                                              for p, s in projected.items()},
           "projected_total_minutes": {p: round(v, 1) for p, v in totals.items()},
           "shipped_measured_minutes": measured, "shipped_bf16": measured_bf16, "detector": det, "verifier": ver, "calibration": cal,
           "counts": {"detector_steps": steps, "verifier_steps": v_steps, "verifier_crops": round(v_crops)},
           "sample_bags": {"detector": n_det, "verifier": n_ver, "truth": n_truth, "calibration": n_cal},
           "loadavg_1m": round(os.getloadavg()[0], 2), "cpu": platform.processor() or platform.machine(),
           "torch": torch.__version__}
    (HERE / "results" / "xray_train.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
