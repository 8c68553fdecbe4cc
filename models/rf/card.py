"""Write models/rf/MODEL_CARD.md from the figures the runs wrote (nothing typed in by hand).

Inputs (each optional but metrics.json): models/rf/metrics.json (train.py), models/rf/eval.json
(`zastava eval rf --json` plus its details), models/rf/noise_fa.json (noise_false_alarms.py),
bench/results/rf_frontend.json (bench_rf_frontend.py).

  .venv/bin/python -m models.rf.card [--eval DATA_DIR]   (--eval: run `eval rf` on DATA_DIR first)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def _load(p: Path) -> dict | None:
    return json.loads(p.read_text()) if p.exists() else None


def _table(head: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def render() -> str:
    m = _load(HERE / "metrics.json")
    if m is None:
        raise FileNotFoundError("models/rf/metrics.json: train first (python -m models.rf.train)")
    ev, fa, bench = _load(HERE / "eval.json"), _load(HERE / "noise_fa.json"), _load(ROOT / "bench/results/rf_frontend.json")
    onnx = HERE / "zastava-rf.onnx"
    sha = hashlib.sha256(onnx.read_bytes()).hexdigest() if onnx.exists() else "(missing)"
    cls = m["classes"]
    s = [f"""# Model card: zastava-rf (RF emitter classifier)

**File**: `models/rf/zastava-rf.onnx` — sha256 `{sha}`

**What it does**: classifies one emitter found by the RF front end (detectors/rf) into
{len(cls)} classes: {", ".join(cls)}. Input `iq` float32 [batch, 2, 1024]: I and Q of the
emitter's burst channelised by `detectors.rf.channel.channelise` (mixed to 0 Hz, ideal low-pass
and decimation to 2 x its measured bandwidth, 1024 samples, unit mean power). Output `logits`
[batch, {len(cls)}]; class names, snippet length and oversampling are in the ONNX metadata.

**Architecture**: amplitude and sample-to-sample phase rotation derived in the graph from I/Q,
6 conv blocks (Conv1d + BatchNorm + ReLU + MaxPool, 24..128 channels), global mean + max
pooling, 2 dense layers. CPU, onnxruntime, one thread.

**Data**: simulator only (hw_sim.rf emitters and band: thermal noise, DC spike, IQ imbalance,
crystal error, cu8 quantisation), through the runtime's own front end and channeliser
(models/rf/snippets.py): a capture per snippet, half with a 15..130 ms burst inside 160 ms,
half with the emitter on throughout 27..109 ms; SNR uniform -4..26 dB in the emitter's own
bandwidth (hw_sim definition); parameters drawn by `hw_sim.rf.emitters.random_params`. An emitter
the front end does not find gives no snippet; `noise` snippets are random bands of emitter-free
captures. {m["train_snippets"]} training snippets (seed {m["seed"]}), {m["test_snippets"]} held-out
(seed {m["seed"] + 1000}, disjoint generators).

**Training**: `python -m models.rf.train` (or `make models`), torch CPU 1 thread, deterministic
algorithms, AdamW + one-cycle LR, {m["epochs"]} epochs, label smoothing 0.05, random carrier phase.
Data {m["data_s"]} s, training {m["train_s"]} s on a shared 2-core machine. Two runs with the same
seed and settings wrote byte-identical ONNX files (checked on a small configuration).

## Held-out accuracy (simulator, training distribution)

Overall {m["held_out_accuracy"]:.3f}; at SNR >= 10 dB: **{m["held_out_accuracy_snr_ge_10"]:.3f}** (target >= 0.90).

""" + _table(["SNR dB", "accuracy"], [[k, v] for k, v in m["accuracy_by_snr_db"].items()]) + "\n\nConfusion (rows = truth, columns = predicted):\n\n"
        + _table(["", *cls], [[c, *row] for c, row in zip(cls, m["confusion"], strict=True)])]
    if ev:
        d = ev.get("details", {})
        s.append(f"""

## `zastava eval rf` on a simulator dataset (`zastava sim dataset rf`, {d.get("dataset", "")})

Detection of scheduled bursts (>= 10 ms) by the front end, per annotated SNR (target: >= 0.95 at
>= 6 dB):

""" + _table(["SNR dB", "Pd", "found/total"],
             [[k, v, "/".join(map(str, d.get("detection_counts", {}).get(k, [])))] for k, v in ev["pd_by_snr_db"].items()])
            + f"""

False alarms on the dataset's emitter-free captures: {ev["false_alarms_per_hour"]} per hour
({d.get("false_alarm_emitters")} new emitters in {d.get("noise_s")} s of noise).

Classifier on the dataset's labelled captures (27 ms each, SNR -4..20 dB; the front end's burst,
or the annotated band where it found none), accuracy per SNR bin (lower edge):

""" + _table(["SNR dB", "accuracy", "right/total"],
             [[k, v, "/".join(map(str, d.get("accuracy_counts", {}).get(k, [])))] for k, v in ev["accuracy_by_snr_db"].items()])
            + f"""

At SNR >= 10 dB: **{d.get("accuracy_snr_ge_10")}** over {d.get("labelled_snr_ge_10")} captures.

Confusion (rows = truth, columns = predicted):

""" + _table(["", *ev["classes"]], [[c, *row] for c, row in zip(ev["classes"], ev["confusion"], strict=True)]))
    if fa:
        s.append(f"""

## False alarms on long noise

`python -m models.rf.noise_false_alarms --minutes {round(fa["hours"] * 60)}` (simulated dongle noise with DC
spike and IQ imbalance, cu8, block by block): **{fa["new_emitters"]} new emitters in {fa["hours"]:.2f} h**
({fa["false_alarms_per_hour"]} per hour; target <= 1), {fa["bursts"]} raw bursts.""")
    if bench:
        s.append("""

## Front end speed (bench/bench_rf_frontend.py, CPU time of one thread, same run)

""" + _table(["stage", "MS/s"], [[k, v] for k, v in bench["msps"].items()])
            + f"\n\nTarget >= {bench['target_msps']} MS/s for cu8 -> tracked emitters.")
    s.append("""

## Limits

- Trained and measured on the simulator only; real dongles and real transmitters differ
  (multipath, adjacent-channel splatter, AGC, other DMR/LoRa variants). Re-measure on recorded
  SigMF captures before trusting the figures in the field.
- The bandwidth normalisation hides absolute bandwidth from the CNN; WFM vs NFM and LoRa
  bandwidths are told apart by modulation shape alone.
- A 27 ms capture of a narrow emitter (NFM, 4-FSK) fills a fraction of the 1024-sample snippet
  (zero padded); accuracy there is lower than on 2^18-sample blocks.
- `noise` means "the front end's detection is not a transmitter"; a jammer already on air when
  the monitor starts becomes part of its noise floor.
""")
    return "".join(s)


def run_eval(data: Path) -> dict:
    """`zastava eval rf` on DATA with the shipped model; figures + details into models/rf/eval.json."""
    from detectors.rf.evaluate import evaluate

    r = evaluate(data, None, data / "eval")
    labelled = len(list((data / "labelled").glob("*.sigmf-meta")))
    detection = len(list((data / "detection").glob("*.sigmf-meta")))
    out = {**r, "details": {**r.details, "dataset": f"{labelled} labelled + {detection} detection captures"}}
    (HERE / "eval.json").write_text(json.dumps(out, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--eval", type=Path, default=None, help="a `zastava sim dataset rf` folder to evaluate first")
    a = p.parse_args(argv)
    if a.eval:
        run_eval(a.eval)
    (HERE / "MODEL_CARD.md").write_text(render())
    print(HERE / "MODEL_CARD.md")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
