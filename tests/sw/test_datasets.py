"""Tests of dupnet.sw.datasets: the built-in composite set, letterbox, WIDER FACE and FDDB."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from PIL import Image

from dupnet.errors import DupnetError
from dupnet.sw import datasets as D
from dupnet.sw.datasets import (DatasetError, DetectionDataset, Sample, builtin_dataset,
                                letterbox, load_fddb, load_wider, open_dataset)


# --------------------------------------------------------------------------------------------
# Built-in dataset
# --------------------------------------------------------------------------------------------

def _same(a: Sample, b: Sample) -> bool:
    return (a.image.dtype == b.image.dtype and a.image.shape == b.image.shape
            and a.image.tobytes() == b.image.tobytes() and a.boxes.tobytes() == b.boxes.tobytes()
            and a.name == b.name)


def test_builtin_api_shapes_and_defaults():
    ds = builtin_dataset("test")
    assert isinstance(ds, DetectionDataset) and len(ds) == 300
    assert len(builtin_dataset("train")) == 2000
    s = ds[17]
    assert isinstance(s, Sample) and s.name == "builtin-test-000017"
    assert s.image.dtype == np.uint8 and s.image.shape == (64, 64, 1)
    assert s.boxes.dtype == np.float32 and s.boxes.ndim == 2 and s.boxes.shape[1] == 4
    assert _same(ds[-1], ds[299])
    with pytest.raises(IndexError):
        ds[300]
    assert builtin_dataset("train", n=7, size=(48, 80))[3].image.shape == (48, 80, 1)
    ds2 = pickle.loads(pickle.dumps(ds))            # DataLoader workers pickle the dataset
    assert _same(ds2[5], ds[5])


def test_builtin_deterministic_and_seed_dependent():
    a = builtin_dataset("train", n=12, seed=3)
    b = builtin_dataset("train", n=12, seed=3)
    c = builtin_dataset("train", n=12, seed=4)
    assert all(_same(a[i], b[i]) for i in range(12))
    differ = sum(a[i].image.tobytes() != c[i].image.tobytes() for i in range(12))
    assert differ == 12
    # the two splits are different streams too
    t = builtin_dataset("test", n=12, seed=3)
    assert all(a[i].image.tobytes() != t[i].image.tobytes() for i in range(12))


def test_builtin_lazy_order_independent():
    ds = builtin_dataset("train", n=30, seed=1)
    forward = [ds[i] for i in range(30)]
    fresh = builtin_dataset("train", n=30, seed=1)
    order = np.random.default_rng(0).permutation(30)
    for i in order:
        assert _same(fresh[int(i)], forward[int(i)])
    # sample i does not depend on n either
    assert _same(builtin_dataset("train", n=1000, seed=1)[29], forward[29])


def test_builtin_channels():
    g = builtin_dataset("test", n=4, channels=1, seed=2)
    c = builtin_dataset("test", n=4, channels=3, seed=2)
    for i in range(4):
        assert c[i].image.shape == (64, 64, 3)
        for k in range(3):
            np.testing.assert_array_equal(c[i].image[:, :, k], g[i].image[:, :, 0])
        np.testing.assert_array_equal(c[i].boxes, g[i].boxes)


def test_builtin_is_grayscale_and_varied():
    ds = builtin_dataset("train", n=40, seed=0)
    counts = [len(ds[i].boxes) for i in range(40)]
    assert set(counts) == {0, 1, 2, 3}
    means = [float(ds[i].image.mean()) for i in range(40)]
    assert np.std(means) > 10                       # backgrounds/brightness vary


def test_face_and_nonface_splits_disjoint():
    tr, te = set(D.FACE_SPLIT["train"]), set(D.FACE_SPLIT["test"])
    assert len(tr) == 80 and len(te) == 20 and not tr & te and tr | te == set(range(100))
    ntr, nte = set(D.NONFACE_SPLIT["train"]), set(D.NONFACE_SPLIT["test"])
    assert not ntr & nte and (ntr | nte) <= set(range(100, 200)) and len(nte) == 20
    # the crops themselves: no test face crop is a (near) copy of a train face crop
    lfw = D._lfw()
    for i in te:
        assert min(np.abs(lfw[i] - lfw[j]).max() for j in tr) > 0.05
    # generated samples only use their own split's crops
    for split in ("train", "test"):
        faces, negs = set(D.FACE_SPLIT[split]), set(D.NONFACE_SPLIT[split])
        for i in range(150):
            lay = D._draw_layout(D._sample_rng(0, split, i), split, 64, 64)
            for p in lay.pastes:
                assert p.crop in (faces if p.kind == "face" else negs)


def test_background_regions_disjoint():
    tr, te = D._backgrounds("train"), D._backgrounds("test")
    assert len(tr) == len(te) == len(D.BACKGROUND_PHOTOS) >= 10
    for name, a, b in zip(D.BACKGROUND_PHOTOS, tr, te):
        full = D._load_photo(name)
        h, w = full.shape
        A, B = np.asarray(a), np.asarray(b)
        if w > h:      # split along columns: train = left part, test = right part
            assert A.shape[0] == B.shape[0] == h and A.shape[1] + B.shape[1] == w
            np.testing.assert_array_equal(np.concatenate([A, B], axis=1), full)
        else:
            assert A.shape[1] == B.shape[1] == w and A.shape[0] + B.shape[0] == h
            np.testing.assert_array_equal(np.concatenate([A, B], axis=0), full)
        assert B.size >= 0.2 * full.size and A.size >= 0.7 * full.size
    # every background crop stays inside its split's region
    for split, regions in (("train", tr), ("test", te)):
        for i in range(100):
            lay = D._draw_layout(D._sample_rng(5, split, i), split, 64, 64)
            bw, bh = regions[lay.bg].size
            x0, y0, x1, y1 = lay.bg_box
            assert -1e-9 <= x0 < x1 <= bw + 1e-9 and -1e-9 <= y0 < y1 <= bh + 1e-9


def _face_patch(p, s_out: int) -> np.ndarray:
    crop = D._lfw()[p.crop]
    crop = crop[:, ::-1] if p.flip else crop
    return np.asarray(Image.fromarray(np.ascontiguousarray(crop), "F").resize(
        (s_out, s_out), Image.BILINEAR))


def _corr(a, b) -> float:
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.astype(np.float64).ravel() - b.mean()
    return float(a @ b / math.sqrt((a @ a) * (b @ b) + 1e-12))


def test_boxes_inside_and_match_pasted_faces():
    H, W = 64, 64
    ds = builtin_dataset("train", n=120, seed=9)
    checked, good, control = 0, [], []
    for i in range(len(ds)):
        s = ds[i]
        b = s.boxes
        assert np.all(b[:, 0] >= 0) and np.all(b[:, 1] >= 0)
        assert np.all(b[:, 2] <= W) and np.all(b[:, 3] <= H)
        assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
        assert np.all(b == np.round(b))
        lay = D._draw_layout(D._sample_rng(9, "train", i), "train", H, W)
        faces = [p for p in lay.pastes if p.kind == "face"]
        assert len(faces) == len(b)
        img = s.image[:, :, 0]
        img = img[:, ::-1] if lay.flip else img              # back to the layout's frame
        for p, box in zip(faces, b):
            x0, y0, x1, y1 = (W - box[2], box[1], W - box[0], box[3]) if lay.flip else box
            assert (x0, y0, x1, y1) == (max(p.x0, 0), max(p.y0, 0),
                                        min(p.x0 + p.s, W), min(p.y0 + p.s, H))
            others = [q for q in lay.pastes if q is not p]
            inside = p.x0 >= 0 and p.y0 >= 0 and p.x0 + p.s <= W and p.y0 + p.s <= H
            if not inside or p.s < 16 or any(
                    D._iou((p.x0, p.y0, p.x0 + p.s, p.y0 + p.s),
                           (q.x0, q.y0, q.x0 + q.s, q.y0 + q.s)) > 0 for q in others):
                continue
            c = p.s // 4                                     # core, away from the feather
            core = img[p.y0 + c:p.y0 + p.s - c, p.x0 + c:p.x0 + p.s - c]
            ref = _face_patch(p, p.s)[c:p.s - c, c:p.s - c]
            good.append(_corr(core, ref))
            control.append(_corr(core, ref[::-1]))           # same crop upside down
            checked += 1
    assert checked >= 20
    assert np.median(good) > 0.85 and np.median(control) < 0.5


def _seam_stats(feather: float, n: int = 200):
    """Mean |step| across the paste edge vs mean |gradient| inside, for isolated faces."""
    H = W = 64
    edge, band, inner = [], [], []
    for i in range(n):
        lay = D._draw_layout(D._sample_rng(0, "train", i), "train", H, W)
        lay.noise, lay.blur, lay.flip = 0.0, 0.0, False
        img, _ = D._render(lay, "train", H, W, feather=feather)
        I = img.astype(np.float32)
        gx, gy = np.abs(np.diff(I, axis=1)), np.abs(np.diff(I, axis=0))
        for p in lay.pastes:
            x0, y0, s = p.x0, p.y0, p.s
            if p.kind != "face" or x0 < 1 or y0 < 1 or x0 + s > W - 1 or y0 + s > H - 1:
                continue
            if any(q is not p and D._iou((x0, y0, x0 + s, y0 + s),
                                         (q.x0, q.y0, q.x0 + q.s, q.y0 + q.s)) > 0
                   for q in lay.pastes):
                continue
            r, c = slice(y0, y0 + s), slice(x0, x0 + s)
            edge.append(np.concatenate([gx[r, x0 - 1], gx[r, x0 + s - 1],
                                        gy[y0 - 1, c], gy[y0 + s - 1, c]]).mean())
            f = max(1, round(D._FEATHER * s))
            band.append(np.concatenate([
                gx[y0 + f:y0 + s - f, x0:x0 + f].ravel(),
                gx[y0 + f:y0 + s - f, x0 + s - f - 1:x0 + s - 1].ravel(),
                gy[y0:y0 + f, x0 + f:x0 + s - f].ravel(),
                gy[y0 + s - f - 1:y0 + s - 1, x0 + f:x0 + s - f].ravel()]).mean())
            inner.append(np.concatenate([
                gx[y0 + f:y0 + s - f, x0 + f:x0 + s - f - 1].ravel(),
                gy[y0 + f:y0 + s - f - 1, x0 + f:x0 + s - f].ravel()]).mean())
    assert len(edge) >= 30
    return float(np.mean(edge)), float(np.mean(band)), float(np.mean(inner))


def test_feathering_leaves_no_seam():
    edge, band, inner = _seam_stats(D._FEATHER)
    assert edge < 0.75 * inner              # across the paste border: smaller than inside
    assert band < 1.15 * inner              # across the feather ramp: not larger than inside
    # the same check fails for a hard paste, so it can detect a seam
    hard_edge, _, hard_inner = _seam_stats(0.0)
    assert hard_edge > 2.5 * hard_inner


def test_nonface_padding_is_masked():
    a = D._nonface_alpha()
    lfw = D._lfw()
    strips = 0
    for i, m in a.items():
        assert m.shape == (25, 25) and m.min() >= 0 and m.max() <= 1
        zero = lfw[i] <= 1e-6
        rows, cols = zero.all(axis=1), zero.all(axis=0)     # padding strips: all-zero lines
        if rows.sum() + cols.sum() >= 3 and zero.mean() < 0.5:
            strips += 1
            assert not m[rows].any() and not m[:, cols].any()
            assert m[~zero].mean() > 0.5
        if not zero.any():
            assert m.min() > 0.3            # no padding: only the crop's outer pixel fades a bit
    assert strips >= 10


def test_builtin_argument_errors():
    with pytest.raises(DatasetError, match="split"):
        builtin_dataset("val")
    with pytest.raises(DatasetError, match="channels"):
        builtin_dataset("train", channels=2)
    with pytest.raises(DatasetError, match="n must"):
        builtin_dataset("train", n=-1)
    with pytest.raises(DatasetError, match="seed"):
        builtin_dataset("train", seed=-3)
    with pytest.raises(DatasetError, match="size"):
        builtin_dataset("train", size=(8, 64))
    assert issubclass(DatasetError, DupnetError)


# --------------------------------------------------------------------------------------------
# letterbox
# --------------------------------------------------------------------------------------------

def test_letterbox_boxes_and_pixels():
    img = np.zeros((10, 20, 3), np.uint8)
    img[3:7, 2:6] = 255                                  # the object, box (2, 3, 6, 7)
    out, b = letterbox(img, np.array([[2, 3, 6, 7]], np.float32), (40, 40))
    assert out.shape == (40, 40, 3) and b.dtype == np.float32
    # scale 2, resized to 20x40, centred: 10 rows of padding on top
    np.testing.assert_allclose(b, [[4, 16, 12, 24]])
    ys, xs = np.nonzero(out[:, :, 0] > 127)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (4, 16, 12, 24)
    assert out[:10].max() == 0 and out[30:].max() == 0   # padding
    # tall image into a wide box, gray 2-D, downscaling, clipping
    g = np.full((100, 50), 200, np.uint8)
    out, b = letterbox(g, np.array([[0, 0, 50, 100], [40, 90, 60, 110]]), (20, 40), fill=7)
    assert out.shape == (20, 40) and out[:, :15].max() == 7 and out[:, 25:].max() == 7
    np.testing.assert_allclose(b, [[15, 0, 25, 20], [23, 18, 25, 20]])
    # identity
    out, b = letterbox(img, np.zeros((0, 4)), (10, 20))
    np.testing.assert_array_equal(out, img)
    assert b.shape == (0, 4)


# --------------------------------------------------------------------------------------------
# WIDER FACE fixtures
# --------------------------------------------------------------------------------------------

def _jpeg(path, h, w, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.full((h, w, 3), value, np.uint8)
    a[: h // 2, : w // 2] = 30
    Image.fromarray(a).save(path, quality=95)


WIDER_GT = """0--Parade/a.jpg
3
2 3 10 12 0 0 0 0 0 0
5 5 8 8 0 0 0 1 0 0
1 1 0 6 0 0 0 0 0 0
1--Handshaking/b.jpg
0
0 0 0 0 0 0 0 0 0 0
1--Handshaking/c.jpg
2
30 20 20 30 1 0 0 0 0 0
0 0 3 3 0 0 0 0 0 0
"""


def _wider(tmp_path, text=WIDER_GT, split="train", images=("0--Parade/a.jpg",
                                                         "1--Handshaking/b.jpg",
                                                         "1--Handshaking/c.jpg")):
    root = tmp_path / "wider"
    (root / "wider_face_split").mkdir(parents=True, exist_ok=True)
    (root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt").write_text(text)
    for rel in images:
        _jpeg(root / f"WIDER_{split}" / "images" / rel, 40, 45)
    return root


def test_wider_parses_and_reads(tmp_path):
    root = _wider(tmp_path)
    ds = load_wider(root)
    assert len(ds) == 3 and [ds[i].name for i in range(3)] == [
        "0--Parade/a.jpg", "1--Handshaking/b.jpg", "1--Handshaking/c.jpg"]
    s = ds[0]
    assert s.image.shape == (40, 45, 3) and s.image.dtype == np.uint8
    np.testing.assert_array_equal(s.boxes, [[2, 3, 12, 15]])     # invalid and w=0 skipped
    assert ds[1].boxes.shape == (0, 4)
    np.testing.assert_array_equal(ds[2].boxes, [[30, 20, 45, 40], [0, 0, 3, 3]])  # clipped
    g = load_wider(root, channels=1)
    assert g[0].image.shape == (40, 45, 1)
    # letterbox to 90x90: scale 2, width 90, height 80, 5 rows of padding; min_face drops 3x3
    lb = load_wider(root, size=(90, 90), min_face=8)
    assert lb[2].image.shape == (90, 90, 3)
    np.testing.assert_allclose(lb[2].boxes, [[60, 45, 90, 85]])
    assert len(load_wider(root, size=(90, 90))[2].boxes) == 2


def test_wider_val_and_open_dataset(tmp_path):
    root = _wider(tmp_path, split="val")
    ds = open_dataset(f"wider:{root}", "test", size=(32, 32), channels=1)
    assert len(ds) == 3 and ds[0].image.shape == (32, 32, 1)
    assert len(load_wider(root, "val")) == 3
    with pytest.raises(DatasetError, match="wider_face_train_bbx_gt.txt"):
        open_dataset(f"wider:{root}", "train", None, 3)
    with pytest.raises(DatasetError, match="split"):
        load_wider(root, "test")


def test_wider_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="not found.*nowhere"):
        load_wider(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="annotation file not found"):
        load_wider(tmp_path / "empty")
    root = _wider(tmp_path, images=("0--Parade/a.jpg", "1--Handshaking/b.jpg"))
    with pytest.raises(DatasetError, match=r"bbx_gt.txt:9 not found: .*c\.jpg"):
        load_wider(root)


@pytest.mark.parametrize("text, line, what", [
    ("a.jpg\nthree\n1 2 3 4 0 0 0 0 0 0\n", 2, "face count"),
    ("a.jpg\n-1\n", 2, "face count"),
    ("a.jpg\n1\n1 2 3 4 0 0 0 0 0\n", 3, "expected 10 numbers"),
    ("a.jpg\n1\n1 2 3 x 0 0 0 0 0 0\n", 3, "expected 10 numbers"),
    # count says 2, only one box line follows: the next path is read as a box line
    ("a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\nb.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n", 4, "10 numbers"),
    # count says 1, two box lines follow
    ("a.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n1 2 3 4 0 0 0 0 0 0\n", 4, "expected an image path"),
    # count larger than what is left in the file
    ("a.jpg\n3\n1 2 3 4 0 0 0 0 0 0\n", 3, "file ends early"),
    ("a.jpg\n", 1, "expected a face count"),
    # n == 0 must still carry its line of zeros
    ("a.jpg\n0\n", 2, "file ends early"),
])
def test_wider_malformed(tmp_path, text, line, what):
    root = _wider(tmp_path, text=text, images=("a.jpg", "b.jpg"))
    with pytest.raises(DatasetError) as e:
        load_wider(root)
    msg = str(e.value)
    assert f"wider_face_train_bbx_gt.txt:{line}:" in msg and what in msg


def test_unreadable_image(tmp_path):
    root = _wider(tmp_path, text="a.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n", images=())
    p = root / "WIDER_train" / "images" / "a.jpg"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"not a jpeg")
    ds = load_wider(root)
    with pytest.raises(DatasetError, match="cannot read image .*a.jpg"):
        ds[0]


# --------------------------------------------------------------------------------------------
# FDDB fixtures
# --------------------------------------------------------------------------------------------

def _fddb(tmp_path, folds: dict[int, str], images=()):
    root = tmp_path / "fddb"
    (root / "FDDB-folds").mkdir(parents=True, exist_ok=True)
    for k, text in folds.items():
        (root / "FDDB-folds" / f"FDDB-fold-{k:02d}-ellipseList.txt").write_text(text)
    for rel, (h, w) in images:
        _jpeg(root / "originalPics" / f"{rel}.jpg", h, w)
    return root


FDDB_1 = """2002/07/19/big/img_1
2
10.0 5.0 0 30 20  1
10.0 5.0 1.5707963267948966 60 40  1
"""
FDDB_2 = """2002/07/19/big/img_2
1
20.0 10.0 0.7853981633974483 5 50  1

"""


def test_fddb_ellipse_boxes(tmp_path):
    root = _fddb(tmp_path, {1: FDDB_1, 2: FDDB_2},
                 [("2002/07/19/big/img_1", (60, 80)), ("2002/07/19/big/img_2", (60, 80))])
    ds = load_fddb(root, folds=[1, 2])
    assert len(ds) == 2 and ds[0].name == "2002/07/19/big/img_1.jpg"
    assert ds[0].image.shape == (60, 80, 3)
    np.testing.assert_allclose(ds[0].boxes, [[20, 15, 40, 25], [55, 30, 65, 50]], atol=1e-4)
    r = math.sqrt((400 + 100) / 2)                       # 45 degrees
    np.testing.assert_allclose(ds[1].boxes, [[0, 50 - r, 5 + r, min(60, 50 + r)]], atol=1e-4)
    # the extent is exact: compare with densely sampled ellipse points
    for major, minor, ang in [(20.0, 10.0, 0.3), (7.0, 3.0, -1.2), (5.0, 5.0, 2.0)]:
        t = np.linspace(0, 2 * np.pi, 100001)
        x = major * np.cos(t) * np.cos(ang) - minor * np.sin(t) * np.sin(ang)
        y = major * np.cos(t) * np.sin(ang) + minor * np.sin(t) * np.cos(ang)
        np.testing.assert_allclose(D._ellipse_box(major, minor, ang, 0, 0),
                                   (x.min(), y.min(), x.max(), y.max()), atol=1e-6)
    only2 = load_fddb(root, folds=[2], size=(30, 40), channels=1)
    assert len(only2) == 1 and only2[0].image.shape == (30, 40, 1)
    np.testing.assert_allclose(only2[0].boxes, [[0, 25 - r / 2, (5 + r) / 2, 30]], atol=1e-4)


def test_fddb_open_dataset_and_errors(tmp_path):
    folds = {k: FDDB_1 if k == 1 else "" for k in range(1, 11)}
    root = _fddb(tmp_path, folds, [("2002/07/19/big/img_1", (60, 80))])
    assert len(open_dataset(f"fddb:{root}", "test", None, 3)) == 1
    with pytest.raises(DatasetError, match="FDDB"):
        open_dataset(f"fddb:{root}", "train", None, 3)
    with pytest.raises(DatasetError, match="folds"):
        load_fddb(root, folds=[0])
    (root / "FDDB-folds" / "FDDB-fold-07-ellipseList.txt").unlink()
    with pytest.raises(DatasetError, match="FDDB-fold-07-ellipseList.txt"):
        load_fddb(root)
    with pytest.raises(DatasetError, match="FDDB root directory not found"):
        load_fddb(tmp_path / "missing")
    root2 = _fddb(tmp_path / "b", {1: FDDB_1})
    with pytest.raises(DatasetError, match=r"fold-01-ellipseList.txt:1 not found: .*img_1\.jpg"):
        load_fddb(root2, folds=[1])


@pytest.mark.parametrize("text, line, what", [
    ("img_1\n1\n10 5 0 30 20\n", 3, "expected 6 numbers"),
    ("img_1\n1\n10 5 0 30 20 1 7\n", 3, "expected 6 numbers"),
    ("img_1\nx\n", 2, "face count"),
    ("img_1\n2\n10 5 0 30 20 1\n", 3, "file ends early"),
    ("img_1\n1\n10 5 0 30 20 1\n10 5 0 30 20 1\n", 4, "expected an image path"),
    ("img_1\n1\n-10 5 0 30 20 1\n", 3, "radii must be positive"),
])
def test_fddb_malformed(tmp_path, text, line, what):
    root = _fddb(tmp_path, {1: text}, [("img_1", (20, 20))])
    with pytest.raises(DatasetError) as e:
        load_fddb(root, folds=[1])
    msg = str(e.value)
    assert f"FDDB-fold-01-ellipseList.txt:{line}:" in msg and what in msg


def test_open_dataset_specs():
    ds = open_dataset("builtin", "test", None, 3, seed=2)
    assert len(ds) == 300 and ds[0].image.shape == (64, 64, 3)
    assert _same(ds[4], builtin_dataset("test", channels=3, seed=2)[4])
    assert open_dataset("builtin", "train", (32, 48), 1)[0].image.shape == (32, 48, 1)
    with pytest.raises(DatasetError, match="unknown dataset spec 'coco:x'"):
        open_dataset("coco:x", "train", None, 3)
    with pytest.raises(DatasetError, match="needs a directory"):
        open_dataset("wider:", "train", None, 3)
    with pytest.raises(DatasetError, match="split"):
        open_dataset("builtin", "val", None, 1)
