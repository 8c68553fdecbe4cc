"""Users' own ONNX models: YOLO v8/11 and end-to-end layouts, built here with the onnx helper API,
decoded through the letterbox back to image pixels; wrong models refused at load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from detectors.xray.detector import ModelLayoutError, load_detector

H, W = 448, 640  # the image; letterboxed into 320 x 320: scale 0.5, pad_y 48, pad_x 0
S, PY = 0.5, 48


def constant_model(path: Path, out: np.ndarray, in_shape=(1, 3, 320, 320), out_name="output0",
                   metadata: dict | None = None, half: bool = False) -> Path:
    """A graph whose output is `out` (plus 0 x the input's mean, so the input is really used);
    half: float16 input and output, as a half-precision export has."""
    kind, dtype = (TensorProto.FLOAT16, np.float16) if half else (TensorProto.FLOAT, np.float32)
    inp = helper.make_tensor_value_info("images", kind, list(in_shape))
    res = helper.make_tensor_value_info(out_name, kind, list(out.shape))
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["const", "z"], [out_name]),
    ]
    init = [numpy_helper.from_array(out.astype(dtype), "const"),
            numpy_helper.from_array(np.array(0.0, dtype), "zero")]
    g = helper.make_graph(nodes, "constant", [inp], [res], init)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    for k, v in (metadata or {}).items():
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def to_input(box):
    """Image-pixel box -> letterboxed input pixels."""
    x1, y1, x2, y2 = box
    return x1 * S, y1 * S + PY, x2 * S, y2 * S + PY


def yolo_tensor(rows: list[tuple[tuple, int, float]], nc: int, n: int = 50) -> np.ndarray:
    out = np.zeros((1, 4 + nc, n), np.float32)
    for k, (box, cls, score) in enumerate(rows):
        x1, y1, x2, y2 = to_input(box)
        out[0, :4, k] = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
        out[0, 4 + cls, k] = score
    return out


@pytest.fixture
def bag():
    rng = np.random.default_rng(0)
    high = rng.integers(20000, 65535, (H, W), dtype=np.uint16)
    low = (high * 0.9).astype(np.uint16)
    return high, low


def test_yolo_boxes_come_back_through_the_letterbox(tmp_path, bag):
    rows = [((100, 50, 200, 150), 1, 0.9),  # the knife
            ((102, 52, 202, 152), 1, 0.6),  # a duplicate NMS must drop
            ((400, 300, 600, 420), 0, 0.3)]  # a gun below the default threshold
    path = constant_model(tmp_path / "y.onnx", yolo_tensor(rows, nc=2))
    det = load_detector(path, "yolo", class_names=["gun", "knife"])
    found = det.detect(*bag)
    assert [(f.cls, f.box) for f in found] == [("knife", (100, 50, 200, 150))]
    assert found[0].score == pytest.approx(0.9)
    # per-class threshold from config lets the gun through
    det = load_detector(path, "yolo", class_names=["gun", "knife"], thresholds={"gun": 0.25})
    found = det.detect(*bag)
    assert sorted((f.cls, f.box) for f in found) == [("gun", (400, 300, 600, 420)), ("knife", (100, 50, 200, 150))]


def test_yolo_class_names_from_ultralytics_metadata(tmp_path, bag):
    path = constant_model(tmp_path / "y.onnx", yolo_tensor([((10, 20, 60, 90), 2, 0.8)], nc=3),
                          metadata={"names": "{0: 'pistol', 1: 'knife', 2: 'powder'}"})
    det = load_detector(path, "yolo")
    assert det.class_names == ["pistol", "knife", "powder"]
    assert [(f.cls, f.box) for f in det.detect(*bag)] == [("powder", (10, 20, 60, 90))]


def test_yolo_single_energy_and_bigger_input(tmp_path, bag):
    # 640 x 640 input: scale 1.0, pad_y 96
    out = np.zeros((1, 5, 10), np.float32)
    out[0, :, 0] = (150, 96 + 100, 100, 40, 0.7)
    path = constant_model(tmp_path / "y.onnx", out, in_shape=(1, 3, 640, 640))
    det = load_detector(path, "yolo", class_names=["bottle"])
    assert [(f.cls, f.box) for f in det.detect(bag[0], None)] == [("bottle", (100, 80, 200, 120))]


def test_a_half_precision_export_runs_as_a_full_one(tmp_path, bag):
    """Ultralytics' `half=True` exports take and give float16: the same boxes and scores (to
    float16's precision) come out as from the float32 export, and an int8 input is still refused."""
    rows = [((100, 50, 200, 150), 1, 0.9), ((400, 300, 600, 420), 0, 0.55)]
    full = load_detector(constant_model(tmp_path / "f.onnx", yolo_tensor(rows, nc=2)), "yolo", class_names=["gun", "knife"])
    half = load_detector(constant_model(tmp_path / "h.onnx", yolo_tensor(rows, nc=2), half=True), "yolo",
                         class_names=["gun", "knife"])
    a, b = full.detect(*bag), half.detect(*bag)
    assert [(f.cls, f.box) for f in b] == [(f.cls, f.box) for f in a] == [("knife", (100, 50, 200, 150)),
                                                                           ("gun", (400, 300, 600, 420))]
    assert [f.score for f in b] == pytest.approx([f.score for f in a], abs=1e-3)


def test_yolov5_rows_are_boxes_with_objectness(tmp_path, bag):
    """YOLOv5/v7 exports: [1, N, 5+nc], a row per box, its class score scaled by its objectness."""
    n, nc = 30, 2
    out = np.zeros((1, n, 5 + nc), np.float32)
    for k, (box, cls, obj, score) in enumerate([((100, 50, 200, 150), 1, 0.9, 0.95),   # 0.855: stands
                                                 ((400, 300, 600, 420), 0, 0.4, 0.9),   # 0.36: under 0.5
                                                 ((102, 52, 202, 152), 1, 0.8, 0.9)]):  # NMS drops it
        x1, y1, x2, y2 = to_input(box)
        out[0, k, :5] = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, obj)
        out[0, k, 5 + cls] = score
    path = constant_model(tmp_path / "v5.onnx", out)
    det = load_detector(path, "yolov5", class_names=["gun", "knife"])
    found = det.detect(*bag)
    assert [(f.cls, f.box) for f in found] == [("knife", (100, 50, 200, 150))]
    assert found[0].score == pytest.approx(0.855, abs=1e-4)
    det = load_detector(path, "yolov5", class_names=["gun", "knife"], thresholds={"gun": 0.3})
    assert sorted(f.cls for f in det.detect(*bag)) == ["gun", "knife"]
    with pytest.raises(ModelLayoutError, match="2 classes but 3 class names"):
        load_detector(path, "yolov5", class_names=["gun", "knife", "x"])
    # a v8 export named v5 (or the reverse) fails at load, not with nonsense boxes
    with pytest.raises(ModelLayoutError):
        load_detector(constant_model(tmp_path / "v8.onnx", yolo_tensor([], nc=2)), "yolov5", class_names=["gun", "knife"])


def test_e2e_layout(tmp_path, bag):
    k = 20
    out = np.zeros((1, k, 6), np.float32)
    out[0, 0] = (*to_input((300, 100, 420, 260)), 0.95, 0)
    out[0, 1] = (*to_input((10, 10, 60, 40)), 0.4, 1)  # below threshold
    out[0, 2] = (*to_input((-20, 400, 30, 470)), 0.8, 1)  # partly outside: clipped to the image
    path = constant_model(tmp_path / "e.onnx", out)
    det = load_detector(path, "e2e", class_names=["narcotics", "weapon"])
    found = sorted((f.cls, f.box) for f in det.detect(*bag))
    assert found == [("narcotics", (300, 100, 420, 260)), ("weapon", (0, 400, 30, 448))]


def test_e2e_class_index_out_of_range_is_ignored(tmp_path, bag):
    out = np.zeros((1, 5, 6), np.float32)
    out[0, 0] = (*to_input((300, 100, 420, 260)), 0.95, 7)
    det = load_detector(constant_model(tmp_path / "e.onnx", out), "e2e", class_names=["a", "b"])
    assert det.detect(*bag) == []


def test_wrong_models_fail_at_load(tmp_path):
    yolo = constant_model(tmp_path / "y.onnx", yolo_tensor([], nc=3))
    with pytest.raises(ModelLayoutError, match="3 classes but 2 class names"):
        load_detector(yolo, "yolo", class_names=["a", "b"])
    with pytest.raises(ModelLayoutError, match="give class_names"):
        load_detector(yolo, "yolo")
    with pytest.raises(ModelLayoutError, match="expects outputs 'heat' and 'ltrb'"):
        load_detector(yolo, "zastava")
    with pytest.raises(ModelLayoutError, match=r"\[1, K, 6\]"):
        load_detector(yolo, "e2e", class_names=["a", "b", "c"])
    bad = constant_model(tmp_path / "b.onnx", np.zeros((1, 5, 4), np.float32))
    with pytest.raises(ModelLayoutError, match=r"\[1, K, 6\]"):
        load_detector(bad, "e2e", class_names=["a"])
    flat = constant_model(tmp_path / "f.onnx", np.zeros((1, 30), np.float32))
    with pytest.raises(ModelLayoutError, match="must be 3-D"):
        load_detector(flat, "yolo", class_names=["a"])
    two_d = constant_model(tmp_path / "i.onnx", np.zeros((1, 6, 5), np.float32), in_shape=(1, 320, 320))
    with pytest.raises(ModelLayoutError, match="4-D NCHW"):
        load_detector(two_d, "yolo", class_names=["a", "b"])
    ints = helper.make_model(helper.make_graph(
        [helper.make_node("Cast", ["images"], ["out"], to=TensorProto.FLOAT)], "int8",
        [helper.make_tensor_value_info("images", TensorProto.INT8, [1, 3, 320, 320])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 320, 320])]),
        opset_imports=[helper.make_opsetid("", 17)])
    ints.ir_version = 9
    onnx.save(ints, str(tmp_path / "int8.onnx"))
    with pytest.raises(ModelLayoutError, match="expected tensor\\(float\\) or tensor\\(float16\\)"):
        load_detector(tmp_path / "int8.onnx", "yolo", class_names=["a"])
    garbage = tmp_path / "g.onnx"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(ModelLayoutError, match="cannot load ONNX model"):
        load_detector(garbage, "yolo", class_names=["a"])
    with pytest.raises(ModelLayoutError, match="not found"):
        load_detector(tmp_path / "missing.onnx", "yolo")
    with pytest.raises(ValueError, match="unknown classes"):
        load_detector(yolo, "yolo", class_names=["a", "b", "c"], thresholds={"z": 0.3})
