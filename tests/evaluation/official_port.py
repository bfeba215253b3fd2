"""Test oracle: a plain-Python port of DOTA_devkit's dota_evaluation_task1.py and polyiou.cpp.

Written to follow the official control flow line by line (dict of records per image, a Python loop
over detections in ``np.argsort(-confidence)`` order, the horizontal-box pre-filter with the +1
convention, ``np.max``/``np.argmax`` over the kept overlaps, ``voc_ap``), with the differences
that the official script crashes on and rgfl scores instead made explicit through arguments.
It shares no code with rgfl.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-8


def _sig(d):
    return (d > EPS) - (d < -EPS)


def _cross(o, a, b):
    return (a[0] - o[0]) * (b[1] - o[1]) - (b[0] - o[0]) * (a[1] - o[1])


def _area(ps):
    res = 0.0
    n = len(ps)
    for i in range(n):
        a, b = ps[i], ps[(i + 1) % n]
        res += a[0] * b[1] - a[1] * b[0]
    return res / 2.0


def _same(p, q):
    return _sig(p[0] - q[0]) == 0 and _sig(p[1] - q[1]) == 0


def _cut(poly, a, b):
    out = []
    n = len(poly)
    for i in range(n):
        cur, nxt = poly[i], poly[(i + 1) % n]
        sc, sn = _sig(_cross(a, b, cur)), _sig(_cross(a, b, nxt))
        if sc > 0:
            out.append(cur)
        if sc != sn:
            s1, s2 = _cross(a, b, cur), _cross(a, b, nxt)
            if _sig(s1) == 0 and _sig(s2) == 0 or _sig(s2 - s1) == 0:
                out.append(out[-1] if out else (0.0, 0.0))  # undefined in C; never hit by the tests
            else:
                out.append(((cur[0] * s2 - nxt[0] * s1) / (s2 - s1), (cur[1] * s2 - nxt[1] * s1) / (s2 - s1)))
    merged = []
    for i, p in enumerate(out):
        if i == 0 or not _same(p, out[i - 1]):
            merged.append(p)
    while len(merged) > 1 and _same(merged[-1], merged[0]):
        merged.pop()
    return merged


def _tri(a, b, c, d):
    o = (0.0, 0.0)
    s1, s2 = _sig(_cross(o, a, b)), _sig(_cross(o, c, d))
    if s1 == 0 or s2 == 0:
        return 0.0
    if s1 == -1:
        a, b = b, a
    if s2 == -1:
        c, d = d, c
    poly = [o, a, b]
    poly = _cut(poly, o, c)
    poly = _cut(poly, c, d)
    poly = _cut(poly, d, o)
    res = abs(_area(poly)) if len(poly) > 0 else 0.0
    return -res if s1 * s2 == -1 else res


def iou_poly(p, q):
    ps1 = [(float(p[2 * i]), float(p[2 * i + 1])) for i in range(4)]
    ps2 = [(float(q[2 * i]), float(q[2 * i + 1])) for i in range(4)]
    if _area(ps1) < 0:
        ps1.reverse()
    if _area(ps2) < 0:
        ps2.reverse()
    inter = 0.0
    for i in range(4):
        for j in range(4):
            inter += _tri(ps1[i], ps1[(i + 1) % 4], ps2[j], ps2[(j + 1) % 4])
    union = abs(_area(ps1)) + abs(_area(ps2)) - inter
    with np.errstate(all="ignore"):
        return float(np.float64(inter) / np.float64(union))


def voc_ap(rec, prec, use_07_metric):
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            if np.sum(rec >= t) == 0:
                p = 0
            else:
                p = np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def voc_eval(det_lines, recs, classname, ovthresh=0.5, use_07_metric=True):
    """det_lines: the class file's lines; recs: image -> list of {'name','difficult','bbox'}.

    Differences from the script (where it would crash): no detection -> AP 0; detections on an
    image that is not in ``recs`` -> false positive.
    """
    class_recs = {}
    npos = 0
    for imagename, objects in recs.items():
        R = [obj for obj in objects if obj["name"] == classname]
        bbox = np.array([x["bbox"] for x in R]).reshape(-1, 8)
        difficult = np.array([x["difficult"] for x in R]).astype(bool)
        npos = npos + sum(~difficult)
        class_recs[imagename] = {"bbox": bbox, "difficult": difficult, "det": [False] * len(R)}
    splitlines = [x.strip().split() for x in det_lines if x.strip()]
    if not splitlines:
        return 0.0
    image_ids = [x[0] for x in splitlines]
    confidence = np.array([float(x[1]) for x in splitlines])
    BB = np.array([[float(z) for z in x[2:]] for x in splitlines])
    sorted_ind = np.argsort(-confidence)
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]
    nd = len(image_ids)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for d in range(nd):
        if image_ids[d] not in class_recs:
            fp[d] = 1.0
            continue
        R = class_recs[image_ids[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R["bbox"].astype(float)
        if BBGT.size > 0:
            gxmin, gymin = np.min(BBGT[:, 0::2], axis=1), np.min(BBGT[:, 1::2], axis=1)
            gxmax, gymax = np.max(BBGT[:, 0::2], axis=1), np.max(BBGT[:, 1::2], axis=1)
            bxmin, bymin, bxmax, bymax = np.min(bb[0::2]), np.min(bb[1::2]), np.max(bb[0::2]), np.max(bb[1::2])
            iw = np.maximum(np.minimum(gxmax, bxmax) - np.maximum(gxmin, bxmin) + 1.0, 0.0)
            ih = np.maximum(np.minimum(gymax, bymax) - np.maximum(gymin, bymin) + 1.0, 0.0)
            inters = iw * ih
            uni = (bxmax - bxmin + 1.0) * (bymax - bymin + 1.0) + (gxmax - gxmin + 1.0) * (gymax - gymin + 1.0) - inters
            hbb_overlaps = inters / uni
            keep_index = np.where(hbb_overlaps > 0)[0]
            if len(keep_index) > 0:
                overlaps = [iou_poly(BBGT[k], bb) for k in keep_index]
                ovmax = np.max(overlaps)
                jmax = keep_index[np.argmax(overlaps)]
        if ovmax > ovthresh:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = 1
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    with np.errstate(all="ignore"):
        rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return voc_ap(rec, prec, use_07_metric)


def parse_gt_text(text):
    """The official ``parse_gt`` on a file's text (whitespace split instead of single spaces)."""
    objects = []
    for line in text.splitlines():
        parts = line.strip().split()
        if len(parts) < 9:
            continue
        objects.append(
            {
                "name": parts[8],
                "difficult": int(parts[9]) if len(parts) == 10 else 0,
                "bbox": [float(v) for v in parts[:8]],
            }
        )
    return objects
