"""Statistics of the report: mean and sd over seeds, paired differences
with their 95% t-interval, the sensitivity check of a task, and reading a
score-vs-compute curve."""
import math
import statistics

# two-sided 95% Student t quantiles, t_{0.975, df}
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447,
         7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086,
         30: 2.042}


def t975(df: int) -> float:
    if df < 1:
        raise ValueError('a t-interval needs at least 2 paired values')
    keys = sorted(k for k in _T975 if k <= df)
    return _T975[keys[-1]] if df <= 30 else 1.96


def summary(values):
    """dict(mean, sd, n) of a list (sd 0 for one value); None if empty."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    sd = statistics.stdev(values) if len(values) > 1 else 0.
    return dict(mean=statistics.fmean(values), sd=sd, n=len(values))


def paired(a: dict, b: dict):
    """Paired difference a - b over the seeds both have ({seed: score}):
    dict(mean, lo, hi, n, seeds), the 95% t-interval; None under 2 pairs."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    d = [a[s] - b[s] for s in seeds]
    m, sd = statistics.fmean(d), statistics.stdev(d)
    half = t975(len(d) - 1) * sd / math.sqrt(len(d))
    return dict(mean=m, lo=m - half, hi=m + half, n=len(d), seeds=seeds)


def verdict(ci, margin=0.):
    """'holds' when the interval of (a - b - margin) lies above 0,
    'reversed' when below, else 'inconclusive'; 'not enough seeds' for
    None."""
    if ci is None:
        return 'not enough seeds'
    if ci['lo'] > margin:
        return 'holds'
    if ci['hi'] < margin:
        return 'reversed'
    return 'inconclusive'


def plateau_verdict(ci, gain, gain_ci):
    """Did an arm plateau on a task, from the paired interval of (score at
    2x budget - score at 1x)? 'plateaued' when the mean gain is under
    ``gain`` and the interval's upper end under ``gain_ci``; 'still
    gaining' when the interval lies above 0 and the mean gain is at least
    ``gain``; else 'not shown' (too few seeds or too wide an interval)."""
    if ci is None:
        return 'not enough seeds'
    if ci['mean'] < gain and ci['hi'] < gain_ci:
        return 'plateaued'
    if ci['lo'] > 0 and ci['mean'] >= gain:
        return 'still gaining'
    return 'not shown'


def sensitivity(rand: dict, sup: dict, factor=3.):
    """A task can rank pre-training when supervised-100% and random init
    differ by more than ``factor`` x their pooled sd. Returns dict(gap,
    pooled_sd, sensitive) or None under 2 seeds each."""
    if len(rand) < 2 or len(sup) < 2:
        return None
    ra, su = list(rand.values()), list(sup.values())
    pooled = math.sqrt((statistics.variance(ra) + statistics.variance(su))
                       / 2.)
    gap = statistics.fmean(su) - statistics.fmean(ra)
    return dict(gap=gap, pooled_sd=pooled,
                sensitive=bool(abs(gap) > factor * pooled))


def compute_to_reach(curve, target):
    """The first compute at which a (compute, score) curve, sorted by
    compute and linearly interpolated, reaches ``target``; None if never."""
    prev = None
    for c, s in curve:
        if s >= target:
            if prev is None or prev[1] >= target:
                return c
            (c0, s0) = prev
            return c0 + (c - c0) * (target - s0) / (s - s0)
        prev = (c, s)
    return None
