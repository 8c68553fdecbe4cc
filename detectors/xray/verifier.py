"""The second look: a small classifier that re-scores one class's candidates on full-resolution crops.

Why a second stage: our detector sees the bag at half resolution (3 mm a pixel) and has to find
everything at once. A wrapped block of narcotics and a cheese or a shoe of the same organic
material differ in details of a few millimetres: the tape and film around the block (a 4 mm
rim), its sharp corners, a second dense layer inside a shoe or a laptop. The detector proposes
its narcotics candidates at a low score; the verifier looks at each one at 1.5 mm a pixel and
gives the score that the operating threshold is applied to (models/xray/MODEL_CARD.md,
"Verifier": on the calibration draw it raises narcotics pd at the same false-alarm budget).

The verifier is its own ONNX file, named with its sha256 in the detector's metadata ("verifier"),
so the pair whose thresholds were calibrated together always runs together: a missing or
different file is refused when the detector loads.

ONNX layout: inputs "crop" [N, 4, S, S] float (crop_input: mu high, mu low, Zeff, detail) and "box" [N, 3] float
(box_features); output "p" [N] float, the probability that the candidate is the class.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from detectors.xray.preprocess import MU_SCALE, Z_SCALE, materials
from detectors.xray.session import ModelLayoutError, ort_session

CROP = 64  # crop side, pixels: a typical candidate (a 10-20 cm block) is 65-130 px at full resolution
CHANNELS = 4
MARGIN = 0.15  # context around the box, as a share of its side, plus MARGIN_PX
MARGIN_PX = 6
HIGHPASS_SIGMA = 1.5  # px; the rim of a wrapped block is 2-3 px wide at full resolution
HIGHPASS_SCALE = 2.0
MAX_VERIFIED = 16  # candidates per frame; the detector proposes ~1 narcotics candidate per bag
# The detector's own score a candidate needs to be looked at. Candidates between the detector's
# MIN_CANDIDATE_SCORE (0.05) and this are half of all (2.06 a bag from 0.05, 0.99 from 0.10) but
# rarely the only sign of a block: on the validation draw, verifying only those from 0.10 on cost
# 0.2 points of narcotics pd at the same false-alarm rate, and it halves the crops, the
# verifier's main cost (MODEL_CARD.md, "Speed"). Training still shows it every candidate from
# 0.05 (models/xray/verifier_train.py): left out, the weak ones cost it 1.1 points.
MIN_VERIFIED_SCORE = 0.10


def crop_window(box, shape_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """The image window a candidate's crop is taken from: its box with some context around it,
    at least 2 x 2 pixels and inside the image whatever the box (a decoder's garbage included).
    Plain float arithmetic: numpy's scalar functions cost more than the rest of this."""
    h, w = shape_hw
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    mx, my = MARGIN * (x2 - x1) + MARGIN_PX, MARGIN * (y2 - y1) + MARGIN_PX
    X1 = min(max(math.floor(x1 - mx), 0), w - 2)
    Y1 = min(max(math.floor(y1 - my), 0), h - 2)
    X2 = min(max(math.ceil(x2 + mx), X1 + 2), w)
    Y2 = min(max(math.ceil(y2 + my), Y1 + 2), h)
    return X1, Y1, X2, Y2


_SCALES = np.array([MU_SCALE, MU_SCALE, Z_SCALE, HIGHPASS_SCALE], np.float32).reshape(CHANNELS, 1, 1)


def crop_input(high: np.ndarray, low: np.ndarray | None, box, out: np.ndarray | None = None) -> np.ndarray:
    """[4, CROP, CROP] float32: high and low attenuation, Zeff and the magnitude of the high
    image's fine detail (attenuation minus its blur), from the full-resolution window around `box`,
    resized with area averaging. The fine-detail channel is computed before resizing, so a rim
    thinner than a resized pixel still leaves its trace in it.

    Full resolution throughout, Zeff included, although it is the verifier's main cost
    (MODEL_CARD.md, "Speed"): a verifier trained on crops made cheaper (Zeff from the detector's
    half-resolution grid, windows longer than 128 px from that grid too) found 5 points fewer
    narcotics on the calibration draw (0.794 against 0.843)."""
    X1, Y1, X2, Y2 = crop_window(box, high.shape)
    m = materials(high[Y1:Y2, X1:X2], None if low is None else low[Y1:Y2, X1:X2])
    detail = cv2.absdiff(m.mu_high, cv2.GaussianBlur(m.mu_high, (0, 0), HIGHPASS_SIGMA))
    # one 4-channel resize: a third faster than four single-plane ones, the same numbers
    planes = cv2.resize(cv2.merge([m.mu_high, m.mu_low, m.zeff, detail]), (CROP, CROP),
                        interpolation=cv2.INTER_AREA)
    if out is None:
        out = np.empty((CHANNELS, CROP, CROP), np.float32)
    np.multiply(planes.transpose(2, 0, 1), _SCALES, out=out)
    return out


def to_verify(findings: list, cls: str) -> list:
    """The findings of a frame the verifier looks at: its class, from MIN_VERIFIED_SCORE, at most
    MAX_VERIFIED (findings come best first), as Postprocess.select hands them to it."""
    return [f for f in findings if f.cls == cls and f.score >= MIN_VERIFIED_SCORE][:MAX_VERIFIED]


def box_features(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """[N, 3] float32: the detector's score and the box's log width and height (the crop is
    resized to a square, so its true size and shape come this way)."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    w = np.maximum(b[:, 2] - b[:, 0], 1.0)
    h = np.maximum(b[:, 3] - b[:, 1], 1.0)
    return np.column_stack((np.asarray(scores, np.float32), np.log(w / CROP), np.log(h / CROP))).astype(np.float32)


class VerifierError(ModelLayoutError):
    """The verifier file is missing, is not the one the detector was calibrated with, or has the
    wrong layout."""


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class Verifier:
    """One class's second look, on an onnxruntime session created once."""

    session: ort.InferenceSession
    cls: str

    def score(self, high: np.ndarray, low: np.ndarray | None, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """The verifier's probability for each candidate box (image pixels) of its class."""
        if len(boxes) == 0:
            return np.zeros(0, np.float32)
        crops = np.empty((len(boxes), CHANNELS, CROP, CROP), np.float32)
        for k, b in enumerate(boxes):
            crop_input(high, low, b, out=crops[k])
        p = self.session.run(["p"], {"crop": crops, "box": box_features(boxes, scores)})[0]
        p = np.asarray(p, np.float32).reshape(-1)
        return np.where(p == p, p, np.float32(0.0))  # NaN -> 0; np.nan_to_num costs ten times as much


def load_verifier(path: Path, sha256: str | None, threads: int = 1) -> Verifier:
    """Load and check a verifier. `sha256`, from the detector's metadata, must match the file."""
    path = Path(path)
    if not path.is_file():
        raise VerifierError(f"verifier file not found: {path} (the detector's metadata names it; it ships beside "
                            "the detector)")
    data = path.read_bytes()  # read once: hashed, then the session is made from these bytes
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise VerifierError(f"{path} is not the verifier this detector was calibrated with (sha256 differs); "
                            "retrain with `make models` or restore the pair")
    try:
        sess = ort_session(data, threads, str(path))
    except ModelLayoutError as e:
        raise VerifierError(str(e)) from e
    ins = {i.name: i.shape for i in sess.get_inputs()}
    outs = [o.name for o in sess.get_outputs()]
    if set(ins) != {"crop", "box"} or outs != ["p"]:
        raise VerifierError(f"{path}: a verifier has inputs 'crop', 'box' and output 'p'; got {sorted(ins)} -> {outs}")
    if list(ins["crop"][1:]) != [CHANNELS, CROP, CROP] or ins["box"][1:] != [3]:
        raise VerifierError(f"{path}: expected crop [N, {CHANNELS}, {CROP}, {CROP}] and box [N, 3], got "
                            f"{ins['crop']} and {ins['box']}")
    cls = sess.get_modelmeta().custom_metadata_map.get("verifies")
    if not cls:
        raise VerifierError(f"{path}: metadata 'verifies' (the class it re-scores) is missing")
    return Verifier(sess, cls)


def verifier_from_metadata(model_path: Path, meta: dict[str, str], class_names: list[str],
                           threads: int = 1) -> Verifier | None:
    """The verifier a detector's metadata names ({"file": ..., "sha256": ...}, the file beside the
    detector), or None when it names none."""
    raw = meta.get("verifier")
    if not raw:
        return None
    try:
        spec = json.loads(raw)
        name, sha = str(spec["file"]), str(spec["sha256"])
    except (ValueError, TypeError, KeyError) as e:
        raise VerifierError(f"{model_path}: metadata 'verifier' is not {{\"file\": .., \"sha256\": ..}}: {e}") from e
    if Path(name).name != name:
        raise VerifierError(f"{model_path}: metadata 'verifier' must name a file beside the model, got {name!r}")
    v = load_verifier(Path(model_path).parent / name, sha, threads)
    if v.cls not in class_names:
        raise VerifierError(f"{name} verifies {v.cls!r}, which is not one of the model's classes {class_names}")
    return v
