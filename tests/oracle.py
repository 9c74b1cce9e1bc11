"""A literal, whole-frame implementation of ../shared/METRICS.md, as the official toolkits compute
it (boundary maps from shifted copies, dilation of the full frame, uint8 decay indices, the
official evaluation flow with 4-D mask stacks). Slow and simple: the fast engine must agree with it
bit for bit."""

import warnings

import numpy as np
from scipy.ndimage import binary_dilation
from scipy.optimize import linear_sum_assignment


def seg2bmap(mask):
    mask = mask.astype(bool)
    east, south, southeast = (np.zeros_like(mask) for _ in range(3))
    east[:, :-1], south[:-1, :], southeast[:-1, :-1] = mask[:, 1:], mask[1:, :], mask[1:, 1:]
    bmap = mask ^ east | mask ^ south | mask ^ southeast
    bmap[-1, :] = mask[-1, :] ^ east[-1, :]
    bmap[:, -1] = mask[:, -1] ^ south[:, -1]
    bmap[-1, -1] = 0
    return bmap


def f_measure(pred, gt, void=None):
    void = np.zeros_like(pred, bool) if void is None else void
    radius = np.ceil(0.008 * np.linalg.norm(pred.shape))
    offsets = np.arange(-radius, radius + 1)
    disk = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius ** 2
    pred_b, gt_b = seg2bmap(pred & ~void), seg2bmap(gt & ~void)
    pred_dil, gt_dil = binary_dilation(pred_b, disk), binary_dilation(gt_b, disk)
    n_pred, n_gt = np.sum(pred_b), np.sum(gt_b)
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = np.sum(pred_b * gt_dil) / float(n_pred)
        recall = np.sum(gt_b * pred_dil) / float(n_gt)
    return 0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def jaccard(gt, pred, void=None):
    """gt, pred: (T, H, W) bool; per-frame J."""
    void = np.zeros_like(gt) if void is None else void
    inters = np.sum(gt & pred & ~void, axis=(-2, -1))
    union = np.sum((gt | pred) & ~void, axis=(-2, -1))
    with np.errstate(invalid="ignore"):
        j = inters / union
    j[np.isclose(union, 0)] = 1
    return j


def boundary(gt, pred, void=None):
    return np.array([f_measure(pred[t], gt[t], None if void is None else void[t])
                     for t in range(gt.shape[0])])


def statistics(values, uint8_ids=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(values)
        recall = np.nanmean(values > 0.5)
    ids = np.round(np.linspace(1, len(values), 5) + 1e-10) - 1
    ids = ids.astype(np.uint8 if uint8_ids else np.int64)
    bins = [values[ids[i]:ids[i + 1] + 1] for i in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        decay = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return mean, recall, decay


def _split(labels, count):
    return np.arange(1, count + 1)[:, None, None, None] == labels[None]


def evaluate_davis2017(gt, pred, unsupervised=False):
    """gt, pred: (N, H, W) labels of all frames. Returns {gt id: (J frames, F frames)} in the
    official aggregation order."""
    void = gt == 255
    gt = np.where(void, 0, gt)
    num_gt = int(gt[0].max())
    if not unsupervised:
        gt, pred, void = gt[1:-1], pred[1:-1], None
    gt_masks = _split(gt, num_gt)
    num_pred = int(pred.max())
    pred_masks = _split(pred, max(num_pred, num_gt))
    if not unsupervised:
        return {k + 1: (jaccard(gt_masks[k], pred_masks[k]), boundary(gt_masks[k], pred_masks[k]))
                for k in range(num_gt)}
    j = np.zeros((len(pred_masks), num_gt, gt.shape[0]))
    f = np.zeros_like(j)
    for i in range(num_gt):
        for p in range(len(pred_masks)):
            j[p, i] = jaccard(gt_masks[i], pred_masks[p], void)
            f[p, i] = boundary(gt_masks[i], pred_masks[p], void)
    score = (np.mean(j, axis=2) + np.mean(f, axis=2)) / 2
    rows, cols = linear_sum_assignment(-score)
    return {c + 1: (j[r, c], f[r, c]) for r, c in zip(rows, cols)}


def evaluate_davis2016(gt, pred):
    gt, pred = gt[1:-1] != 0, pred[1:-1] != 0
    return {1: (jaccard(gt, pred), boundary(gt, pred))}
