"""AP (all-points interpolation) and FDDB-style detection rate on hand-computed cases."""
import math

import numpy as np
import pytest

from dupnet.sw.metrics import (average_precision, default_fp, detection_rate_at_fp,
                               evaluate_detections, match_detections, precision_recall)


def B(*rows):
    return np.array(rows, np.float32).reshape(-1, 4)


def S(*v):
    return np.array(v, np.float32)


G1 = B([0, 0, 10, 10], [20, 20, 30, 30])        # image 0: two faces
G2 = B([0, 0, 10, 10])                          # image 1: one face


def test_perfect_detections_give_ap_one():
    dets = [(G1, S(0.9, 0.8)), (G2, S(0.7))]
    assert average_precision(dets, [G1, G2]) == pytest.approx(1.0)
    assert detection_rate_at_fp(dets, [G1, G2], fp=0) == pytest.approx(1.0)


def test_ap_hand_case_with_false_positive_in_the_middle():
    # sorted: .9 TP (img0 face0), .8 FP (img1 background), .7 TP (img1 face), 1 face missed
    dets = [(B([1, 0, 11, 10]), S(0.9)), (B([50, 50, 60, 60], [0, 0, 10, 10]), S(0.8, 0.7))]
    gts = [G1, G2]
    p, r = precision_recall(dets, gts)
    np.testing.assert_allclose(p, [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(r, [1 / 3, 1 / 3, 2 / 3])
    # all-points: recall 0 -> 1/3 at precision 1, 1/3 -> 2/3 at precision 2/3, rest 0
    assert average_precision(dets, gts) == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3)


def test_ap_interpolation_takes_the_max_precision_to_the_right():
    # FP, TP, TP over 2 faces: p = [0, 1/2, 2/3], r = [0, 1/2, 1]
    # envelope: p(r<=1/2) = 2/3 (from the right), so AP = 1/2*2/3 + 1/2*2/3 = 2/3
    g = B([0, 0, 10, 10], [20, 0, 30, 10])
    dets = [(B([100, 100, 110, 110], [0, 0, 10, 10], [20, 0, 30, 10]), S(0.9, 0.8, 0.7))]
    assert average_precision(dets, [g]) == pytest.approx(2 / 3)


def test_duplicates_and_iou_threshold():
    g = B([0, 0, 10, 10])
    # the second detection of the same face is a false positive
    dets = [(B([0, 0, 10, 10], [0, 0, 10, 10]), S(0.9, 0.8))]
    _, tp, n = match_detections(dets, [g])
    assert tp.tolist() == [True, False] and n == 1
    assert average_precision(dets, [g]) == pytest.approx(1.0)
    # IoU exactly 0.5 matches (>=); just below does not
    half = B([0, 0, 10, 5])                     # IoU 50/100
    assert match_detections([(half, S(1.0))], [g], iou=0.5)[1].tolist() == [True]
    below = B([0, 0, 10, 4.9])
    assert match_detections([(below, S(1.0))], [g], iou=0.5)[1].tolist() == [False]
    assert average_precision([(below, S(1.0))], [g]) == 0.0


def test_matching_stays_inside_each_image():
    # a box matching image 1's face is a false positive in image 0
    dets = [(B([0, 0, 10, 10]), S(0.9)), (B(), S())]
    gts = [B(), G2]
    _, tp, n = match_detections(dets, gts)
    assert tp.tolist() == [False] and n == 1
    assert average_precision(dets, gts) == 0.0


def test_edge_cases():
    assert math.isnan(average_precision([(B(), S())], [B()]))
    assert math.isnan(detection_rate_at_fp([(B(), S())], [B()], fp=1))
    assert average_precision([(B(), S())], [G1]) == 0.0
    assert detection_rate_at_fp([(B(), S())], [G1], fp=5) == 0.0
    with pytest.raises(ValueError, match="one of each"):
        average_precision([(B(), S())], [G1, G2])
    with pytest.raises(ValueError, match="scores"):
        average_precision([(B([0, 0, 1, 1]), S(0.1, 0.2))], [G1])


def test_detection_rate_at_fixed_false_positives():
    # scores: .95 TP, .9 FP, .8 TP, .7 FP, .6 FP, .5 TP over 4 faces
    g = B([0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10])
    boxes = B([0, 0, 10, 10], [100, 100, 110, 110], [20, 0, 30, 10], [120, 100, 130, 110],
              [140, 100, 150, 110], [40, 0, 50, 10])
    dets = [(boxes, S(0.95, 0.9, 0.8, 0.7, 0.6, 0.5))]
    assert detection_rate_at_fp(dets, [g], fp=0) == pytest.approx(1 / 4)
    assert detection_rate_at_fp(dets, [g], fp=1) == pytest.approx(2 / 4)
    assert detection_rate_at_fp(dets, [g], fp=2) == pytest.approx(2 / 4)
    assert detection_rate_at_fp(dets, [g], fp=3) == pytest.approx(3 / 4)
    assert detection_rate_at_fp(dets, [g], fp=100) == pytest.approx(3 / 4)
    with pytest.raises(ValueError):
        detection_rate_at_fp(dets, [g], fp=-1)


def test_detection_rate_treats_tied_scores_as_one_threshold():
    g = B([0, 0, 10, 10], [20, 0, 30, 10])
    # FP and TP tied at .8: at 0 FP only the .9 detection may be kept
    dets = [(B([0, 0, 10, 10], [100, 100, 110, 110], [20, 0, 30, 10]), S(0.9, 0.8, 0.8))]
    assert detection_rate_at_fp(dets, [g], fp=0) == pytest.approx(0.5)
    assert detection_rate_at_fp(dets, [g], fp=1) == pytest.approx(1.0)


def test_default_fp_scales_fddb_operating_point():
    assert default_fp(2845) == 1000
    assert default_fp(300) == 105
    assert default_fp(1) == 1
    m = evaluate_detections([(G1, S(0.9, 0.8)), (G2, S(0.7))], [G1, G2])
    assert (m.fp, m.images, m.faces, m.detections) == (1, 2, 3, 3)
    assert m.ap == pytest.approx(1.0) and m.detection_rate == pytest.approx(1.0)
    assert "AP@0.5 = 1.0000" in str(m)
