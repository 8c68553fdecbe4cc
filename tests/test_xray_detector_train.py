"""Training is deterministic for a seed, and what it exports loads in the runtime with its class
names and operating thresholds. Tiny runs (a handful of bags, one epoch): this checks the
machinery, not the model's quality (that is `zastava eval xray`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is in the `train` extra: pip install -e '.[train]'")

from detectors.xray import CLASSES  # noqa: E402
from detectors.xray.detector import load_detector  # noqa: E402
from hw_sim.xray.scene import make_bag  # noqa: E402
from models.xray import train  # noqa: E402


def weights(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return all(torch.equal(wa[k], wb[k]) for k in wa)


def test_same_seed_same_weights_other_seed_other_weights():
    a, facts = train.train(bags=8, epochs=1, seed=3, batch=4, progress=False)
    b, _ = train.train(bags=8, epochs=1, seed=3, batch=4, progress=False)
    c, _ = train.train(bags=8, epochs=1, seed=4, batch=4, progress=False)
    wa, wb, wc = weights(a), weights(b), weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert facts["seed"] == 3 and facts["threads"] == 1 and len(facts["history"]) == 1


def test_bfloat16_training_is_deterministic_and_differs_from_float32():
    """--bf16 is part of the recipe: the same seed gives the same weights, and not float32's."""
    a, facts = train.train(bags=8, epochs=1, seed=3, batch=4, progress=False, bf16=True)
    b, _ = train.train(bags=8, epochs=1, seed=3, batch=4, progress=False, bf16=True)
    c, _ = train.train(bags=8, epochs=1, seed=3, batch=4, progress=False)
    wa, wb, wc = weights(a), weights(b), weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert facts["bf16"] is True and all(v.dtype != torch.bfloat16 for v in wa.values())
    assert np.isfinite([h["heat_loss"] for h in facts["history"]]).all()


def test_precision_auto_follows_the_cpu_flags(tmp_path):
    """--precision auto (the recipe's default) trains in bfloat16 only where the CPU has it natively:
    elsewhere oneDNN emulates it, slower than float32. Read from a cpuinfo file of each kind."""
    def cpuinfo(flags: str):
        f = tmp_path / f"cpuinfo-{len(list(tmp_path.iterdir()))}"
        f.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 {flags}\n\n")
        return f
    assert train.native_bf16(cpuinfo("avx512f avx512_bf16 avx512_vnni"))
    assert train.native_bf16(cpuinfo("avx512f amx_tile amx_bf16"))
    assert not train.native_bf16(cpuinfo("avx512f avx512_vnni"))  # AVX-512 without bfloat16
    assert not train.native_bf16(cpuinfo("fma"))
    assert not train.native_bf16(tmp_path / "missing")  # no /proc: assume not


@pytest.mark.parametrize("flags, bf16", [(["--precision", "fp32"], False), (["--precision", "bf16"], True),
                                         (["--bf16"], True), ([], None)])
def test_the_command_line_precision_reaches_the_training(tmp_path, flags, bf16):
    """`make models` runs main(): what its flags ask for is what trains and what the log records
    (no flag: auto, bfloat16 exactly where this CPU has it natively)."""
    expected = train.native_bf16() if bf16 is None else bf16
    assert train.main(["--bags", "4", "--epochs", "1", "--batch", "2", "--threads", "1", "--seed", "7",
                       "--calibration-bags", "2", "--no-verifier", "--quiet", "--out", str(tmp_path), *flags]) == 0
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log["bf16"] is expected and log["seed"] == 7 and len(log["history"]) == 1
    meta = load_detector(tmp_path / "zastava-xray.onnx", "zastava").session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["train"])["bf16"] is expected


def test_targets_put_a_peak_at_each_object_centre():
    objs = [(0, [40.0, 20.0, 80.0, 60.0]), (1, [200.0, 100.0, 210.0, 180.0])]
    heat, ltrb, wgt = train.encode(objs, flip_x=False, flip_y=False)
    assert heat.shape == (len(CLASSES), *train.GRID_HW)
    # centre (60, 40) -> cell (10, 15) at stride 4
    assert heat[0, 10, 15] == 1.0 and heat[1].max() == 1.0 and heat[2:].max() == 0.0
    cy, cx = (10 + 0.5) * 4, (15 + 0.5) * 4
    assert ltrb[:, 10, 15] == pytest.approx([cx - 40, cy - 20, 80 - cx, 60 - cy])
    assert wgt[10, 15] == 1.0
    flipped, _, _ = train.encode(objs, flip_x=True, flip_y=False)
    assert np.array_equal(flipped[0], heat[0][:, ::-1])


def test_segmentation_targets_are_each_class_s_share_of_the_cells_its_objects_cover():
    """--seg-weight's targets: each class's map is the share of each grid cell its objects cover,
    so it is zero away from that class's boxes, reaches 1 inside a large one, and mirrors with the
    bag as the image does."""
    _, targets, segs = train.draw_bags(12, seed=11, progress=False)
    assert segs.shape == (12, len(CLASSES), *train.GRID_HW) and segs.dtype == np.float16
    seen = set()
    for k, objs in enumerate(targets):
        for c in range(len(CLASSES)):
            inside = np.zeros(train.GRID_HW, bool)
            for oc, (x1, y1, x2, y2) in objs:
                if oc == c:
                    s = train.STRIDE
                    inside[int(y1 // s):int(np.ceil(y2 / s)), int(x1 // s):int(np.ceil(x2 / s))] = True
            assert segs[k, c][~inside].max(initial=0) == 0
            if inside.sum() > 16:  # an object of a few cells across covers some cell whole
                assert segs[k, c].max() == 1.0
                seen.add(CLASSES[c])
        if not objs:
            assert segs[k].max() == 0
    assert "narcotics" in seen
    flipped = train.flip_maps(segs[:2].astype(np.float32), np.array([True, False]), np.array([False, True]))
    assert np.array_equal(flipped[0], segs[0][..., ::-1]) and np.array_equal(flipped[1], segs[1][..., ::-1, :])


def test_the_segmentation_head_trains_deterministically_and_is_not_exported(tmp_path):
    a, facts = train.train(bags=8, epochs=1, seed=3, batch=4, progress=False, seg_weight=10.0)
    b, _ = train.train(bags=8, epochs=1, seed=3, batch=4, progress=False, seg_weight=10.0)
    c, _ = train.train(bags=8, epochs=1, seed=3, batch=4, progress=False)
    wa, wb, wc = weights(a), weights(b), weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not torch.equal(wa["seg.weight"], wc["seg.weight"])
    assert facts["seg_weight"] == 10.0 and np.isfinite(facts["history"][0]["seg_loss"])
    import onnx

    path = tmp_path / "zastava-xray.onnx"
    train.export(a, path, facts)
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["heat", "ltrb"]


def test_item_targets_are_each_kind_s_share_of_the_cells_its_items_cover():
    """--items-weight's targets: after the class maps, one map per ITEM_KINDS, zero away from that
    kind's boxes and 1 somewhere inside a large one; the bags and the class maps do not change."""
    xs, targets, segs = train.draw_bags(6, seed=11, progress=False)
    xs2, targets2, segs2 = train.draw_bags(6, seed=11, progress=False, items=True)
    nc = len(CLASSES)
    assert segs2.shape == (6, nc + len(train.ITEM_KINDS), *train.GRID_HW)
    assert np.array_equal(xs, xs2) and targets == targets2 and np.array_equal(segs, segs2[:, :nc])
    assert segs2[:, nc:].max() == 1.0
    seen = set()
    for seed in range(4):
        bag = make_bag(np.random.default_rng(seed))
        assert len(bag.item_masks) == len(bag.items)
        cover = np.zeros((len(train.ITEM_KINDS), *train.GRID_HW), np.float32)
        train.item_cover(bag, cover)
        for j, name in enumerate(train.ITEM_KINDS):
            inside = np.zeros(train.GRID_HW, bool)
            big = False
            for (n, (x1, y1, x2, y2)), m in zip(bag.items, bag.item_masks, strict=True):
                assert m.shape == (y2 - y1, x2 - x1) and m.dtype == bool
                if n == name:
                    s = 2 * train.STRIDE  # the grid's cell is 8 image pixels
                    inside[y1 // s:-(-y2 // s), x1 // s:-(-x2 // s)] = True
                    big |= m.sum() > 40 * s * s
            assert cover[j][~inside].max(initial=0) == 0
            if big:
                assert cover[j].max() == 1.0
                seen.add(name)
    assert "clothes" in seen


def test_the_item_maps_train_deterministically_beside_the_class_maps_and_are_not_exported(tmp_path):
    a, facts = train.train(bags=8, epochs=1, seed=3, batch=4, progress=False, seg_weight=10.0, items_weight=3.0)
    b, _ = train.train(bags=8, epochs=1, seed=3, batch=4, progress=False, seg_weight=10.0, items_weight=3.0)
    wa, wb = weights(a), weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert wa["seg.weight"].shape[0] == len(CLASSES) + len(train.ITEM_KINDS)
    h = facts["history"][0]
    assert np.isfinite(h["seg_loss"]) and np.isfinite(h["items_loss"]) and facts["item_kinds"] == list(train.ITEM_KINDS)
    import onnx

    path = tmp_path / "zastava-xray.onnx"
    train.export(a, path, facts)
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["heat", "ltrb"]
    assert load_detector(path, "zastava").class_names == list(CLASSES)


@pytest.mark.parametrize("fx,fy", [(True, False), (False, True), (True, True)])
def test_flipped_batch_targets_are_the_targets_of_the_flipped_boxes(fx, fy):
    """Training flips the encoded arrays instead of re-encoding: that must give what encoding
    the mirrored boxes gives (objects off the cell edges, where the peak cell is unambiguous)."""
    objs = [[(0, [41.0, 21.0, 83.0, 63.0]), (1, [201.0, 101.0, 211.0, 181.0])], [(3, [10.0, 9.0, 310.0, 201.0])]]
    enc = train.encode_all(objs)
    heat, ltrb, wgt = train.batch_targets(enc, np.array([0, 1]), np.array([fx, fx]), np.array([fy, fy]))
    for k, o in enumerate(objs):
        h2, l2, w2 = train.encode(o, flip_x=fx, flip_y=fy)
        np.testing.assert_allclose(heat[k].numpy(), h2, atol=2e-3)
        np.testing.assert_allclose(wgt[k].numpy(), w2, atol=2e-3)
        np.testing.assert_allclose(ltrb[k].numpy(), l2, atol=1e-4)
    assert heat.dtype == torch.float32 and ltrb.shape == (2, 4, *train.GRID_HW)


def test_export_loads_in_the_runtime_with_names_and_thresholds(tmp_path):
    net, facts = train.train(bags=6, epochs=1, seed=5, batch=3, progress=False)
    path = tmp_path / "m.onnx"
    train.export(net, path, facts)
    thr, facts = train.calibrate(path, seed=6, bags=4, progress=False)
    assert facts["fa_total"] <= facts["budget"] or all(v == 0.95 for v in thr.values())
    assert set(thr) == set(CLASSES) and all(0.1 <= v <= 0.95 for v in thr.values())
    det = load_detector(path, "zastava")
    assert det.class_names == list(CLASSES) and det.model_thresholds == thr
    meta = det.session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["train"])["seed"] == 5
    bag = make_bag(np.random.default_rng(0), "weapon")
    assert isinstance(det.detect(bag.high, bag.low), list)


def test_calibration_writes_payload_thresholds_the_runtime_reads(tmp_path):
    net, facts = train.train(bags=6, epochs=1, seed=5, batch=3, progress=False)
    path = tmp_path / "m.onnx"
    train.export(net, path, facts)
    _, facts = train.calibrate(path, seed=6, bags=6, progress=False)
    meta = load_detector(path, "zastava").session.get_modelmeta().custom_metadata_map
    stored = json.loads(meta["payload_thresholds"])
    assert stored == {c: v["threshold"] for c, v in facts["payload"]["by_class"].items()}
    det = load_detector(path, "zastava", payload_thresholds={"narcotics": 0.2})
    assert det.post.payload_thresholds["narcotics"] == 0.2  # the configuration wins


@pytest.mark.parametrize("views,dims", [(2, (3,)), (4, (3,)), (4, (2,)), (4, (2, 3))])
def test_flip_views_make_the_graph_mirror_equivariant(views, dims):
    """With the flips averaged in the graph, a mirrored bag gives the mirrored heat and boxes: a
    wrong un-flip (or a left/right distance not swapped back) breaks this."""
    from models.xray.net import ExportWrapper, XrayNet

    torch.manual_seed(0)
    wrap = ExportWrapper(XrayNet(len(CLASSES)).eval(), views).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        heat, ltrb = wrap._flip_average(x)
        heat_m, ltrb_m = wrap._flip_average(x.flip(dims))
    swap = list(range(4))
    if 3 in dims:
        swap[0], swap[2] = 2, 0
    if 2 in dims:
        swap[1], swap[3] = 3, 1
    torch.testing.assert_close(heat_m, heat.flip(dims), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ltrb_m, ltrb.flip(dims)[:, swap], rtol=1e-4, atol=1e-4)


def test_a_checkpoint_exports_and_calibrates_with_other_views(tmp_path):
    """--from-checkpoint: the weights of a run's last saved epoch become a calibrated model (here
    with two views averaged in the graph), without training again."""
    ckpt = tmp_path / "ckpt.pt"
    train.train(bags=6, epochs=1, seed=5, batch=3, progress=False, checkpoint=ckpt)
    assert train.main(["--from-checkpoint", str(ckpt), "--views", "2", "--out", str(tmp_path),
                       "--calibration-bags", "4", "--quiet", "--no-verifier"]) == 0
    det = load_detector(tmp_path / "zastava-xray.onnx", "zastava")
    meta = det.session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["train"])["views"] == 2
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log["views"] == 2 and len(log["history"]) == 1 and set(log["calibration"]["thresholds"]) == set(CLASSES)
    bag = make_bag(np.random.default_rng(1), "narcotics")
    assert isinstance(det.detect(bag.high, bag.low), list)


def test_the_verifiers_mask_targets_lie_under_the_crop_they_belong_to():
    """The mask head learns where the block is in the crop: its target must be the block's share
    of each cell of that very crop's window, not of the box or of a window placed elsewhere."""
    from detectors.xray.verifier import crop_window
    from models.xray.verifier_train import mask_target

    bag = make_bag(np.random.default_rng(11), "narcotics", place="bottle")
    block = next(o for o in bag.objects if o.cls == "narcotics")
    truth = block.mask.astype(np.float32)
    x1, y1, x2, y2 = block.box
    target = mask_target(truth, block.box).astype(np.float64)
    X1, Y1, X2, Y2 = crop_window(block.box, truth.shape)
    assert target.shape == (8, 8) and 0 <= target.min() and target.max() <= 1 + 1e-6
    assert abs(target.mean() - truth[Y1:Y2, X1:X2].mean()) < 0.02  # area-averaged, nothing lost
    assert target[3:5, 3:5].min() > 0.5 and target[0, 0] < target[3, 3]  # the block in the middle, margin around it
    w = x2 - x1
    off_left = mask_target(truth, (x1 - w, y1, x1, y2))  # a box of the same size beside the block
    assert off_left[:, -2:].sum() > off_left[:, :2].sum()  # the block appears on its right side only


def test_the_verifier_learns_from_the_detectors_candidates_and_is_linked_to_it(tmp_path):
    """The recipe's second stage on a tiny detector: candidates collected the same way for a seed
    whatever the workers, the same weights for a seed, the file named with its sha256 in the
    detector's metadata, and the pair calibrated together."""
    from detectors.xray.verifier import file_sha256
    from models.xray import verifier_train
    from models.xray.net import XrayNet

    # an untrained network: its heat sits at the prior (~0.1) everywhere, so it proposes plenty
    torch.manual_seed(0)
    path = tmp_path / "zastava-xray.onnx"
    train.export(XrayNet(len(CLASSES)), path, {"seed": 5})
    (tmp_path / "train_log.json").write_text(json.dumps({"seed": 5}))
    one = verifier_train.collect(path, seed=7, bags=4, workers=1, progress=False)
    two = verifier_train.collect(path, seed=7, bags=4, workers=2, progress=False)
    assert len(one["labels"]) > 0 and all(np.array_equal(one[k], two[k]) for k in one)
    assert one["masks"].shape == (len(one["labels"]), 8, 8)
    a, facts = verifier_train.train(one, epochs=1, seed=2, threads=1, progress=False)
    b, _ = verifier_train.train(one, epochs=1, seed=2, threads=1, progress=False)
    assert same_weights(a, b)
    assert facts["candidates"] == len(one["labels"]) and "focal_gamma" not in facts
    # the focal loss (--verifier-focal): as deterministic, other weights, a smaller loss (each
    # crop's is scaled by (1 - p_t)^gamma < 1), and recorded
    f1, ffacts = verifier_train.train(one, epochs=1, seed=2, threads=1, progress=False, focal_gamma=2.0)
    f2, _ = verifier_train.train(one, epochs=1, seed=2, threads=1, progress=False, focal_gamma=2.0)
    assert same_weights(f1, f2)
    assert not same_weights(a, f1)
    assert ffacts["focal_gamma"] == 2.0 and ffacts["history"][0]["loss"] < facts["history"][0]["loss"]

    # a handful of truth bags: the recipe's 6000 took this test to 4-5 min (the truth crops have
    # their own test below)
    assert train.main(["--verifier-only", "--out", str(tmp_path), "--verifier-bags", "4", "--verifier-epochs", "1",
                       "--verifier-truth-bags", "3", "--calibration-bags", "4", "--quiet"]) == 0
    det = load_detector(path, "zastava")
    vfile = tmp_path / verifier_train.FILE
    assert det.verifier is not None and det.verifier.cls == "narcotics"
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log["verifier"]["sha256"] == file_sha256(vfile) and log["verifier"]["bags"] == 4
    assert log["sha256"] == file_sha256(path)
    bag = make_bag(np.random.default_rng(2), "narcotics")
    assert isinstance(det.detect(bag.high, bag.low), list)


def test_a_verifier_trained_with_the_truth_crops_ignores_the_detectors_score(tmp_path):
    """--verifier-truth-bags: the truth's crops follow the candidates, the detector's score is zero
    in the data, and the exported verifier gives the same probability whatever score it is handed
    (the runtime still passes one: its layout is unchanged)."""
    import onnxruntime as ort

    from models.xray import verifier_train
    from models.xray.net import XrayNet

    torch.manual_seed(0)
    path = tmp_path / "zastava-xray.onnx"
    train.export(XrayNet(len(CLASSES)), path, {"seed": 5})
    cand = verifier_train.collect(path, seed=7, bags=2, workers=1, progress=False)
    data = verifier_train.with_truth(cand, truth_bags=3, seed=3001, workers=1)
    n = len(cand["labels"])
    assert len(data["labels"]) > n and (data["feats"][:, 0] == 0).all()
    assert np.array_equal(data["crops"][:n], cand["crops"]) and data["labels"][n:].max() == 1
    assert data["masks"].shape == (len(data["labels"]), 8, 8)
    facts = verifier_train.build(path, bags=2, epochs=1, seed=3001, workers=1, threads=1, progress=False,
                                 truth_bags=3)
    assert facts["truth_bags"] == 3 and facts["truth_skip"] == ["false_bottom"] and facts["candidates"] == len(data["labels"])
    sess = ort.InferenceSession(str(tmp_path / verifier_train.FILE))
    crop = data["crops"][:4].astype(np.float32)
    box = data["feats"][:4].copy()
    p0 = sess.run(["p"], {"crop": crop, "box": box})[0]
    box[:, 0] = 0.9
    assert np.array_equal(sess.run(["p"], {"crop": crop, "box": box})[0], p0)
    # without the option the exported graph is the one shipped before it: the box goes in as it is
    import onnx

    plain = tmp_path / "plain.onnx"
    verifier_train.export(verifier_train.VerifierNet(), plain, {})
    assert not [n for n in onnx.load(str(plain)).graph.node if "box" in n.input and n.op_type == "Mul"]
    assert [n for n in onnx.load(str(tmp_path / verifier_train.FILE)).graph.node
            if "box" in n.input and n.op_type == "Mul"]


def test_an_ensemble_of_verifiers_is_one_graph_that_averages_its_members(tmp_path):
    """--verifier-members 2: two networks trained on the same crops with their own seeds, exported
    as one file whose probability is the mean of theirs (each member is what train() gives for
    its seed alone), so the runtime runs one session; one member writes the file of before."""
    import onnxruntime as ort

    from models.xray import verifier_train
    from models.xray.net import XrayNet

    torch.manual_seed(0)
    path = tmp_path / "zastava-xray.onnx"
    train.export(XrayNet(len(CLASSES)), path, {"seed": 5})
    facts = verifier_train.build(path, bags=2, epochs=1, seed=3001, workers=1, threads=1, progress=False,
                                 members=2)
    seeds = [m["seed"] for m in facts["members"]]
    assert seeds == [3001, 3001 + verifier_train.MEMBER_SEED_STEP]
    assert facts["train_seconds"] == pytest.approx(sum(m["train_seconds"] for m in facts["members"]), abs=0.2)
    ens = ort.InferenceSession(str(tmp_path / verifier_train.FILE))
    meta = json.loads(ens.get_modelmeta().custom_metadata_map["train"])
    assert [m["seed"] for m in meta["members"]] == seeds and "history" not in meta["members"][0]
    assert all(m["history"] for m in facts["members"])  # the histories stay in train_log.json
    data = verifier_train.collect(path, seed=3001, bags=2, workers=1, progress=False)
    crop, box = data["crops"][:6].astype(np.float32), data["feats"][:6]
    singles = []
    for s in seeds:
        net, _ = verifier_train.train(data, epochs=1, seed=s, threads=1, progress=False)
        one = tmp_path / f"member-{s}.onnx"
        verifier_train.export(net, one, {})
        singles.append(ort.InferenceSession(str(one)).run(["p"], {"crop": crop, "box": box})[0])
    assert not np.allclose(singles[0], singles[1])  # the seeds made two different networks
    np.testing.assert_allclose(ens.run(["p"], {"crop": crop, "box": box})[0], (singles[0] + singles[1]) / 2,
                               rtol=1e-5, atol=1e-6)
