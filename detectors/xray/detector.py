"""The X-ray detector: one interface over our ONNX model, users' YOLO / end-to-end ONNX models and
the physics baseline.

    det = load_detector(Path("models/xray/zastava-xray.onnx"), "zastava", threads=1)
    findings = det.detect(high, low)   # uint16 HxW each; low None = single energy

The onnxruntime session is created once, at load, and the model's inputs and outputs are checked
against the layout there: a wrong model fails when the agent starts, not on the first bag.
"""

from __future__ import annotations

import ast
import functools
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import onnxruntime as ort

from detectors.xray import CLASSES, LAYOUTS, Layout
from detectors.xray.preprocess import (
    INORGANIC,
    MATERIAL_NAMES,
    MIN_MU,
    NONE,
    Materials,
    bag_mask,
    check_pair,
    letterbox,
    materials,
    model_input_from,
    model_materials,
    pseudocolor_from,
)
from detectors.xray.session import ModelLayoutError, ort_session
from detectors.xray.verifier import MAX_VERIFIED, MIN_VERIFIED_SCORE, Verifier, verifier_from_metadata

log = logging.getLogger("zastava.xray")

NMS_IOU = 0.45
# candidates below this never reach NMS, whatever the per-class threshold (keeps NMS cheap)
MIN_CANDIDATE_SCORE = 0.05
MAX_CANDIDATES = 300
DESCRIBE_STEP = 2  # findings are described on every 2nd row and column (see describe)
WALL_PX = 10  # ~15 mm at 1.5 mm/px: closer than that to the bag's outline = in the wall or lining
# The class whose findings are hiding places (false bottoms, double walls), and how much of a
# finding's box must lie inside one for it to count as that hiding place's payload.
CONTAINER_CLASS = "concealment"
PAYLOAD_INSIDE = 0.7


@dataclass
class XrayFinding:
    """One detected object. box = (x1, y1, x2, y2) in the input image's pixels (x = column)."""

    cls: str
    score: float
    box: tuple[int, int, int, int]
    material: str = "none"
    zeff: float = 0.0
    concealed: bool = False
    concealment_reason: str | None = None


class Detector(Protocol):
    class_names: list[str]

    def detect(self, high: np.ndarray, low: np.ndarray | None) -> list[XrayFinding]: ...


@dataclass
class Candidates:
    """Raw boxes in image pixels before thresholds and NMS."""

    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2
    scores: np.ndarray  # (N,) float32
    classes: np.ndarray  # (N,) int

    @staticmethod
    def empty() -> Candidates:
        return Candidates(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def inside_share(boxes: np.ndarray, holders: np.ndarray) -> np.ndarray:
    """For each box (N, 4), the largest share of its area inside one of `holders` (M, 4)."""
    if not len(boxes) or not len(holders):
        return np.zeros(len(boxes), np.float32)
    b = boxes
    iw = np.clip(np.minimum(b[:, None, 2], holders[None, :, 2]) - np.maximum(b[:, None, 0], holders[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(b[:, None, 3], holders[None, :, 3]) - np.maximum(b[:, None, 1], holders[None, :, 1]), 0, None)
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-9)
    return (iw * ih).max(axis=1) / area


def payload_keep(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, thr: np.ndarray,
                 payload_thr: np.ndarray, container: int | None) -> np.ndarray:
    """Which findings stand at the operating point: those at their class threshold, and those of a
    class with a payload threshold that reach it and lie inside (PAYLOAD_INSIDE of their box) a
    standing container finding (a false bottom or double wall).

    Why a second threshold: a hidden compartment already sends the officer to open it, and what it
    holds is far more likely contraband than the same shadow among clothes, so the evidence a
    payload needs is less. Clean bags have no compartments, so the rule adds few false alarms
    there (calibration measures them). The one rule for the runtime (Postprocess), the calibration
    and the evaluation, so that what is measured is what runs."""
    keep = scores >= thr[classes]
    if container is None or not keep.any():
        return keep
    holders = boxes[keep & (classes == container)]
    maybe = ~keep & (scores >= payload_thr[classes]) & (classes != container)
    if not len(holders) or not maybe.any():
        return keep
    keep[np.flatnonzero(maybe)] = inside_share(boxes[maybe], holders) >= PAYLOAD_INSIDE
    return keep


@dataclass
class Postprocess:
    """Per-class thresholds (and payload thresholds inside a hiding place, see payload_keep), then
    class-aware NMS (OpenCV's), then describe each box."""

    class_names: list[str]
    thresholds: dict[str, float] = field(default_factory=dict)
    default_threshold: float = 0.5
    nms_iou: float = NMS_IOU
    payload_thresholds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = (set(self.thresholds) | set(self.payload_thresholds)) - set(self.class_names)
        if unknown:
            raise ValueError(f"thresholds for unknown classes {sorted(unknown)}; classes: {self.class_names}")
        self._thr = np.array([self.thresholds.get(c, self.default_threshold) for c in self.class_names],
                             np.float32)
        # a payload threshold only ever lowers a class's threshold, and only with a container class
        self._container = self.class_names.index(CONTAINER_CLASS) if CONTAINER_CLASS in self.class_names else None
        self._payload = self._thr if self._container is None else np.minimum(self._thr, np.array(
            [self.payload_thresholds.get(c, 1.0) for c in self.class_names], np.float32))

    def standing(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Which of these findings stand at this operating point (payload_keep)."""
        return payload_keep(boxes, scores, classes, self._thr, self._payload, self._container)

    def operating_point(self) -> tuple[dict[str, float], dict[str, float]]:
        """Every class's threshold, and the payload thresholds that lower one (inside a container
        finding), as this post-processing applies them."""
        thr = {c: float(self.thresholds.get(c, self.default_threshold)) for c in self.class_names}
        if self._container is None:
            return thr, {}
        return thr, {c: float(t) for c, t in self.payload_thresholds.items() if t < thr[c]}

    def candidates_only(self) -> Postprocess:
        """The same post-processing keeping every candidate from MIN_CANDIDATE_SCORE: evaluation and
        calibration take all of them once and apply operating points afterwards (payload_keep)."""
        return Postprocess(self.class_names, {c: MIN_CANDIDATE_SCORE for c in self.class_names},
                           MIN_CANDIDATE_SCORE, self.nms_iou)

    def select(self, c: Candidates, width: int, height: int, rescore: Rescore | None = None) -> Candidates:
        """rescore = (class index, function): that class's candidates enter NMS from the
        verifier's MIN_VERIFIED_SCORE whatever the class's threshold, and after NMS the function
        (a verifier) gives the scores the thresholds apply to."""
        if len(c.scores) == 0:
            return c
        cls = c.classes.astype(np.int64)
        valid = (cls >= 0) & (cls < len(self.class_names)) & np.isfinite(c.scores)
        valid &= np.isfinite(c.boxes).all(axis=1)
        cls_ok = np.where(valid, cls, 0)  # np.clip on integers costs five times as much
        floor = self._payload[cls_ok]
        if rescore is not None:
            floor = np.where(cls_ok == rescore[0], MIN_VERIFIED_SCORE, floor)
        keep = valid & (c.scores >= floor)
        boxes = c.boxes[keep].copy()
        np.clip(boxes, 0, np.array([width, height, width, height], np.float32), out=boxes)
        scores, cls = c.scores[keep], cls[keep]
        nonempty = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        boxes, scores, cls = boxes[nonempty], scores[nonempty], cls[nonempty]
        if len(scores) == 0:
            return Candidates.empty()
        xywh = np.column_stack((boxes[:, :2], boxes[:, 2:] - boxes[:, :2]))
        idx = cv2.dnn.NMSBoxesBatched(xywh, scores, cls, 0.0, self.nms_iou)
        idx = np.asarray(idx, np.int64).reshape(-1)
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        boxes, scores, cls = boxes[idx], scores[idx], cls[idx]
        if rescore is not None:
            boxes, scores, cls = _rescored(boxes, scores, cls, *rescore)
        stand = self.standing(boxes, scores, cls)
        return Candidates(boxes[stand], scores[stand], cls[stand])


Rescore = tuple[int, Callable[[np.ndarray, np.ndarray], np.ndarray]]


def _rescored(boxes: np.ndarray, scores: np.ndarray, cls: np.ndarray, which: int,
              fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class `which`'s boxes (sorted by score, best first) re-scored by fn, the best MAX_VERIFIED
    of them; the rest, the weakest candidates of an unusually busy frame, drop out."""
    sel = np.flatnonzero(cls == which)
    if not len(sel):
        return boxes, scores, cls
    top = sel[:MAX_VERIFIED]
    verdict = fn(boxes[top], scores[top].copy())
    scores = scores.copy()
    scores[sel] = 0.0
    scores[top] = verdict
    order = np.argsort(-scores, kind="stable")
    return boxes[order], scores[order], cls[order]


def describe(boxes: Candidates, class_names: list[str], m: Materials) -> list[XrayFinding]:
    """Material, Zeff and concealment of each kept box, from the image itself.

    Judged on a grid of every DESCRIBE_STEP-th pixel: a box's statistics do not need every pixel,
    and describing at full resolution cost a fifth of the detector's overhead over the bare
    network (bench/bench_xray_detector.py). Materials already on a coarser grid (our model's
    input) are used as they are; full-resolution ones through strided views (nothing copied)."""
    if len(boxes.scores) == 0:
        return []
    if m.step == 1 and DESCRIBE_STEP > 1:
        k = DESCRIBE_STEP
        m = Materials(m.mu_high[::k, ::k], m.mu_low[::k, ::k], m.zeff[::k, ::k], m.dual, k)
    k = m.step
    inside_bag = None  # the bag's outline: made when a finding first needs it
    container = class_names.index(CONTAINER_CLASS) if CONTAINER_CLASS in class_names else -1
    in_compartment = inside_share(boxes.boxes, boxes.boxes[boxes.classes == container]) >= PAYLOAD_INSIDE
    out = []
    for (x1, y1, x2, y2), s, c, held in zip(boxes.boxes, boxes.scores, boxes.classes, in_compartment, strict=True):
        b = (math.floor(x1), math.floor(y1), math.ceil(x2), math.ceil(y2))
        hb = (b[0] // k, b[1] // k, max(b[2] // k, b[0] // k + 1), max(b[3] // k, b[1] // k + 1))
        material, zeff = box_material(m, hb)
        cls = class_names[int(c)]
        if held and int(c) != container:
            concealed, reason = True, "inside a false bottom or double wall (a concealment finding)"
        else:
            if inside_bag is None and cls != CONTAINER_CLASS:
                inside_bag = bag_mask(m.mu_high, kernel=5)
            concealed, reason = concealment(m, inside_bag, hb, cls, step=k)
        out.append(XrayFinding(cls, float(s), b, material, zeff, concealed, reason))
    return out


def box_material(m: Materials, box: tuple[int, int, int, int]) -> tuple[str, float]:
    """The dominant material of the densest part of the box (its upper third by attenuation), which
    is the object rather than the clothes around it."""
    x1, y1, x2, y2 = box
    mu = m.mu_high[y1:y2, x1:x2]
    if mu.size == 0:
        return "none", 0.0
    k = int(0.66 * (mu.size - 1))  # the 66th percentile by selection, not np.percentile's sort
    sel = mu >= max(float(np.partition(mu, k, axis=None)[k]), MIN_MU)
    if not sel.any():
        return "none", 0.0
    zsel = m.zeff[y1:y2, x1:x2][sel]
    counts = np.bincount(m.classify(mu[sel], m.mu_low[y1:y2, x1:x2][sel], zsel), minlength=4)
    counts[NONE] = 0
    material = MATERIAL_NAMES[int(np.argmax(counts))] if counts.any() else "none"
    zeff = _median(zsel) if m.dual else 0.0
    return material, round(zeff, 1)


def _median(v: np.ndarray) -> float:
    """np.median of a 1-D array by one partition: np.median's checks and copies cost three times
    as much on the few thousand pixels of a box."""
    n = len(v)
    if n % 2:
        return float(np.partition(v, n // 2)[n // 2])
    lo, hi = np.partition(v, (n // 2 - 1, n // 2))[n // 2 - 1:n // 2 + 1]
    return (float(lo) + float(hi)) / 2


def concealment(m: Materials, inside_bag: np.ndarray | None, box: tuple[int, int, int, int], cls: str,
                step: int = 1) -> tuple[bool, str | None]:
    """Whether the object sits inside another object, judged from a ring around its box:

    - a structural concealment finding (false bottom, double wall) is concealment by definition;
    - a ring mostly metal/inorganic -> inside electronics, a bottle or a tin;
    - a ring that is itself dense (the box's surroundings attenuate like packed contents) -> under
      dense clutter;
    - an object within WALL_PX (full-resolution pixels, measured along rows and columns) of the
      bag's outline or the image edge -> in the lining / wall.

    `m`, `inside_bag` (bag_mask; None will do for the structural class, which needs none) and `box`
    share one grid of every `step`-th full-resolution pixel.
    """
    if cls == CONTAINER_CLASS:
        return True, "structural: false bottom or double wall"
    if inside_bag is None:
        raise ValueError(f"judging a {cls} finding's concealment needs the bag's outline (bag_mask)")
    x1, y1, x2, y2 = box
    h, w = m.mu_high.shape
    pad = max(4 // step, int(0.15 * max(x2 - x1, y2 - y1)), 1)
    X1, Y1, X2, Y2 = max(0, x1 - pad), max(0, y1 - pad), min(w, x2 + pad), min(h, y2 + pad)
    ring = np.ones((Y2 - Y1, X2 - X1), bool)
    ring[y1 - Y1:y2 - Y1, x1 - X1:x2 - X1] = False
    if not ring.any():
        return False, None
    if inside_bag[Y1:Y2, X1:X2][ring].mean() < 0.5:
        return False, None  # mostly outside the bag: loose on the belt
    win = (slice(Y1, Y2), slice(X1, X2))
    mu_r = m.mu_high[win][ring]
    mats = m.classify(mu_r, m.mu_low[win][ring], m.zeff[win][ring])
    hard = (mats >= INORGANIC).mean()  # inorganic or metal (the class codes are ordered)
    if m.dual and hard > 0.45:
        return True, "inside electronics or a container (metal/inorganic all around)"
    mu_ring = _median(mu_r)
    if mu_ring > 1.2:
        return True, f"under dense clutter (surroundings attenuate {mu_ring:.1f})"
    # Near the wall: the box grown by WALL_PX reaches outside the bag or the image (a bag cut by
    # the image edge has its wall there). A window test instead of a distance transform of the
    # whole frame, which cost more than the rest of describing (bench/bench_xray_detector.py).
    r = max(1, WALL_PX // step)
    if inside_bag[y1:y2, x1:x2].any():
        if x1 - r < 0 or y1 - r < 0 or x2 + r > w or y2 + r > h:
            return True, "in the bag wall or lining"
        if not inside_bag[y1 - r:y2 + r, x1 - r:x2 + r].all():
            return True, "in the bag wall or lining"
    return False, None


# -- ONNX models -------------------------------------------------------------------------------------

def _static_hw(shape: list, what: str) -> tuple[int, int] | None:
    if len(shape) != 4:
        raise ModelLayoutError(f"{what}: expected a 4-D NCHW input, got shape {shape}")
    if shape[1] not in (3, "3") and isinstance(shape[1], int):
        raise ModelLayoutError(f"{what}: expected 3 input channels, got {shape[1]}")
    h, w = shape[2], shape[3]
    return (h, w) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None


def _metadata_names(sess: ort.InferenceSession) -> list[str] | None:
    """Class names stored by the exporter: ours as JSON under 'class_names', Ultralytics' as a
    Python dict literal under 'names' ({0: 'gun', 1: 'knife'})."""
    meta = sess.get_modelmeta().custom_metadata_map
    if "class_names" in meta:
        names = json.loads(meta["class_names"])
        return [str(n) for n in names]
    if "names" in meta:
        try:
            d = ast.literal_eval(meta["names"])
        except (ValueError, SyntaxError):
            return None
        if isinstance(d, dict):
            return [str(d[k]) for k in sorted(d)]
        if isinstance(d, list | tuple):
            return [str(n) for n in d]
    return None


def _metadata_thresholds(sess: ort.InferenceSession, class_names: list[str], key: str = "thresholds") -> dict[str, float]:
    raw = sess.get_modelmeta().custom_metadata_map.get(key)
    if not raw:
        return {}
    try:
        d = json.loads(raw)
        return {str(k): float(v) for k, v in d.items() if k in class_names}
    except (ValueError, TypeError, AttributeError) as e:
        raise ModelLayoutError(f"model metadata '{key}' is not a JSON object of numbers: {e}") from e


class OnnxDetector:
    """An ONNX model in one of three layouts, behind the Detector interface."""

    def __init__(self, path: Path, layout: Layout, class_names: list[str] | None = None,
                 thresholds: dict[str, float] | None = None, default_threshold: float = 0.5,
                 threads: int = 1, payload_thresholds: dict[str, float] | None = None, verifier: bool = True):
        if layout not in LAYOUTS:
            raise ModelLayoutError(f"unknown layout {layout!r}; one of {', '.join(LAYOUTS)}")
        self.path, self.layout = Path(path), layout
        self.session = ort_session(self.path, threads, str(self.path))
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        if len(ins) != 1:
            raise ModelLayoutError(f"{path}: expected one input, the model has {[i.name for i in ins]}")
        self.input_name = ins[0].name
        if ins[0].type not in ("tensor(float)", "tensor(float16)"):
            raise ModelLayoutError(f"{path}: input {ins[0].name} is {ins[0].type}, expected tensor(float) "
                                   "or tensor(float16)")
        # a half-precision export (Ultralytics' `half=True`) takes and gives float16: the tensor is
        # cast for it and its outputs back, so the decoders and thresholds see float32 as always
        self.half = ins[0].type == "tensor(float16)"
        names = class_names or _metadata_names(self.session)
        if layout == "zastava":
            self.size_hw = _static_hw(ins[0].shape, f"{path} input")
            if self.size_hw is None:
                raise ModelLayoutError(f"{path}: zastava layout needs a fixed input size, got {ins[0].shape}")
            got = sorted(o.name for o in outs)
            if got != ["heat", "ltrb"]:
                raise ModelLayoutError(f"{path}: zastava layout expects outputs 'heat' and 'ltrb', got {got}")
            heat = next(o for o in outs if o.name == "heat")
            nc = heat.shape[1] if len(heat.shape) == 4 else None
            names = names or list(CLASSES)
            if not isinstance(nc, int) or nc != len(names):
                raise ModelLayoutError(f"{path}: 'heat' has shape {heat.shape}, expected [1, {len(names)}, h, w]")
            self.stride = self.size_hw[0] // heat.shape[2] if isinstance(heat.shape[2], int) else 4
        else:
            self.size_hw = _static_hw(ins[0].shape, f"{path} input") or (640, 640)
            if len(outs) != 1:
                raise ModelLayoutError(f"{path}: {layout} layout expects one output, got {[o.name for o in outs]}")
            shp = outs[0].shape
            if len(shp) != 3:
                raise ModelLayoutError(f"{path}: {layout} output must be 3-D, got shape {shp}")
            if layout in ("yolo", "yolov5"):
                # v8/11: [1, 4+nc, N] (a row per quantity); v5/v7: [1, N, 5+nc] (a row per box, objectness)
                per, extra, want = (shp[1], 4, "[1, 4+nc, N]") if layout == "yolo" else (shp[2], 5, "[1, N, 5+nc]")
                if not isinstance(per, int) or per < extra + 1:
                    raise ModelLayoutError(f"{path}: {layout} output must be {want}, got {shp}")
                nc = per - extra
                if names is None:
                    raise ModelLayoutError(f"{path}: give class_names for this model ({nc} classes)")
                if len(names) != nc:
                    raise ModelLayoutError(f"{path}: output {shp} has {nc} classes but {len(names)} class names "
                                           f"were given: {names}")
            else:
                if shp[2] != 6:
                    raise ModelLayoutError(f"{path}: e2e output must be [1, K, 6] (x1,y1,x2,y2,score,class), "
                                           f"got {shp}")
                if names is None:
                    raise ModelLayoutError(f"{path}: give class_names for this end-to-end model")
        self.output_names = ["heat", "ltrb"] if layout == "zastava" else [outs[0].name]
        self.class_names = list(names)
        # The model's own operating point (chosen on a validation draw when it was trained) applies
        # to every class the configuration leaves out; the configuration always wins.
        self.model_thresholds = _metadata_thresholds(self.session, self.class_names)
        self.model_payload_thresholds = _metadata_thresholds(self.session, self.class_names, "payload_thresholds")
        merged = {**self.model_thresholds, **dict(thresholds or {})}
        payload = {**self.model_payload_thresholds, **dict(payload_thresholds or {})}
        self.post = Postprocess(self.class_names, merged, default_threshold, payload_thresholds=payload)
        # our model's second look at one class (detectors/xray/verifier.py), named in its metadata
        self.verifier: Verifier | None = None
        self._verified = -1  # the class index the verifier re-scores
        if layout == "zastava" and verifier:
            self.verifier = verifier_from_metadata(self.path, self.session.get_modelmeta().custom_metadata_map,
                                                   self.class_names, threads)
            if self.verifier is not None:
                self._verified = self.class_names.index(self.verifier.cls)
                log.info("%s: %s candidates re-scored by its verifier", self.path.name, self.verifier.cls)

    # The three layouts differ only in the tensor they want and how they encode boxes.
    def prepare(self, m: Materials, high: np.ndarray, low: np.ndarray | None) -> tuple[np.ndarray, object]:
        if self.layout == "zastava":
            return model_input_from(m, self.size_hw), None
        rgb = cv2.cvtColor(pseudocolor_from(m, high, low), cv2.COLOR_BGR2RGB)
        boxed, s, px, py = letterbox(rgb, self.size_hw)
        x = np.ascontiguousarray(boxed.transpose(2, 0, 1)[None], dtype=np.float32)
        x *= 1.0 / 255.0
        return x, (s, px, py)

    def decode(self, outputs: list[np.ndarray], geom, shape_hw: tuple[int, int]) -> Candidates:
        if self.layout == "zastava":
            return decode_zastava(outputs[0], outputs[1], self.size_hw, shape_hw)
        if self.layout == "yolo":
            c = decode_yolo(outputs[0])
        elif self.layout == "yolov5":
            c = decode_yolov5(outputs[0])
        else:
            c = decode_e2e(outputs[0])
        s, px, py = geom
        return unletterbox(c, s, px, py)

    def detect(self, high: np.ndarray, low: np.ndarray | None) -> list[XrayFinding]:
        check_pair(high, low)
        # our model sees half resolution: its materials are computed there; the YOLO layouts
        # need the full-resolution pseudo-colour image
        m = model_materials(high, low) if self.layout == "zastava" else materials(high, low)
        x, geom = self.prepare(m, high, low)
        if self.half:
            outputs = [np.asarray(o, np.float32) for o in
                       self.session.run(self.output_names, {self.input_name: x.astype(np.float16)})]
        else:
            outputs = self.session.run(self.output_names, {self.input_name: x})
        cand = self.decode(outputs, geom, high.shape)
        rescore = None
        if self.verifier is not None:
            v = self.verifier
            rescore = (self._verified, lambda b, s: v.score(high, low, b, s))
        kept = self.post.select(cand, high.shape[1], high.shape[0], rescore)
        return describe(kept, self.class_names, m)


@functools.lru_cache(maxsize=8)
def _zastava_grid(in_hw: tuple[int, int], img_hw: tuple[int, int], h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """For our head's grid of h x w cells: each cell's centre in image pixels as (cx, cy, cx, cy)
    rows [4, h*w], and the signs and scales that turn its ltrb distances into box sides [4, 1].
    Computed once per geometry: made afresh on every frame they were half of decode's numpy
    calls, and after the network's run each call costs several times its hot price (cold code;
    bench/bench_xray_detector.py)."""
    sy, sx = img_hw[0] / in_hw[0], img_hw[1] / in_hw[1]
    stride_y, stride_x = in_hw[0] / h, in_hw[1] / w
    y, x = np.divmod(np.arange(h * w), w)
    ctr = np.array(((x + 0.5) * stride_x, (y + 0.5) * stride_y) * 2)
    scale = np.array([[sx], [sy], [sx], [sy]])
    return ctr * scale, np.array([[-1.0], [-1.0], [1.0], [1.0]]) * scale


def decode_zastava(heat: np.ndarray, ltrb: np.ndarray, in_hw: tuple[int, int],
                   img_hw: tuple[int, int]) -> Candidates:
    """Our head: heat [1, C, h, w] already peak-filtered in the graph (3x3 max-pool keeps local
    maxima only); ltrb [1, 4, h, w] = distances from the cell centre to the box sides, in input
    pixels. Boxes are scaled from the model input to the image."""
    _, _, h, w = heat.shape
    # flat indices, then divmod: np.nonzero on the 3-D map costs twice as much, a handful of
    # candidates being all there is to unravel
    flat_hm = heat.reshape(-1)
    idx = np.flatnonzero(flat_hm >= MIN_CANDIDATE_SCORE)
    if len(idx) == 0:
        return Candidates.empty()
    scores = flat_hm[idx]
    if len(scores) > MAX_CANDIDATES:
        top = np.argpartition(-scores, MAX_CANDIDATES)[:MAX_CANDIDATES]
        idx, scores = idx[top], scores[top]
    c, cell = np.divmod(idx, h * w)
    ctr, signed_scale = _zastava_grid(tuple(in_hw), tuple(img_hw), h, w)
    # centre plus the signed distances (-l, -t, +r, +b), all scaled to the image
    boxes = ctr[:, cell] + ltrb.reshape(4, -1)[:, cell] * signed_scale
    return Candidates(boxes.T.astype(np.float32), scores.astype(np.float32), c)


def decode_yolo(out: np.ndarray) -> Candidates:
    """YOLOv8/11 head: [1, 4+nc, N] rows cx, cy, w, h then one score per class; no objectness,
    no NMS in the graph. Boxes are in the letterboxed input's pixels."""
    p = out[0]
    cls_scores = p[4:]
    cls = np.argmax(cls_scores, axis=0)
    scores = cls_scores[cls, np.arange(p.shape[1])]
    keep = scores >= MIN_CANDIDATE_SCORE
    if not keep.any():
        return Candidates.empty()
    cx, cy, w, h = p[0, keep], p[1, keep], p[2, keep], p[3, keep]
    boxes = np.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), axis=1).astype(np.float32)
    return Candidates(boxes, scores[keep].astype(np.float32), cls[keep].astype(np.int64))


def decode_yolov5(out: np.ndarray) -> Candidates:
    """YOLOv5/v7 head: [1, N, 5+nc] rows cx, cy, w, h, objectness, then one score per class; a
    box's score for a class is objectness x class score, as those exports' own NMS ranks them.
    No NMS in the graph. Boxes are in the letterboxed input's pixels."""
    p = out[0]
    cls_scores = p[:, 5:] * p[:, 4:5]
    cls = np.argmax(cls_scores, axis=1)
    scores = cls_scores[np.arange(len(p)), cls]
    keep = scores >= MIN_CANDIDATE_SCORE
    if not keep.any():
        return Candidates.empty()
    cx, cy, w, h = p[keep, 0], p[keep, 1], p[keep, 2], p[keep, 3]
    boxes = np.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), axis=1).astype(np.float32)
    return Candidates(boxes, scores[keep].astype(np.float32), cls[keep].astype(np.int64))


def decode_e2e(out: np.ndarray) -> Candidates:
    """End-to-end head (NMS inside the graph, e.g. YOLOv10/RT-DETR exports): [1, K, 6] rows x1, y1,
    x2, y2, score, class in the letterboxed input's pixels; padding rows have score 0."""
    p = out[0]
    keep = p[:, 4] >= MIN_CANDIDATE_SCORE
    p = p[keep]
    return Candidates(p[:, :4].astype(np.float32), p[:, 4].astype(np.float32),
                      np.rint(p[:, 5]).astype(np.int64))


def unletterbox(c: Candidates, scale: float, px: int, py: int) -> Candidates:
    if len(c.scores) == 0:
        return c
    b = c.boxes.copy()
    b[:, [0, 2]] = (b[:, [0, 2]] - px) / scale
    b[:, [1, 3]] = (b[:, [1, 3]] - py) / scale
    return Candidates(b, c.scores, c.classes)


def load_detector(model: Path | str, layout: Layout = "zastava", class_names: list[str] | None = None,
                  thresholds: dict[str, float] | None = None, default_threshold: float = 0.5,
                  threads: int = 1, payload_thresholds: dict[str, float] | None = None,
                  verifier: bool = True) -> Detector:
    """Build the configured detector: "physics" = the baseline, else an ONNX file in `layout`.
    verifier=False leaves out the verifier our model's metadata names (training a new one needs
    the detector's own candidates)."""
    if isinstance(model, str) and model == "physics":
        from detectors.xray.baseline import PhysicsDetector

        return PhysicsDetector(thresholds=dict(thresholds or {}), default_threshold=default_threshold,
                               payload_thresholds=payload_thresholds)
    path = Path(model)
    if not path.is_file():
        raise ModelLayoutError(f"model file not found: {path}")
    return OnnxDetector(path, layout, class_names, thresholds, default_threshold, threads, payload_thresholds,
                        verifier)
