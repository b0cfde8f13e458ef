"""The tabulated Poisson sampler must be a Poisson sampler."""

import numpy as np
import pytest
from scipy import stats

from mc_beamline.physics.counting import FixedMeanPoissonSampler


@pytest.mark.parametrize("mean", [0.02, 0.3, 2.0, 25.0])
def test_counts_follow_poisson_statistics(mean):
    rng = np.random.default_rng(7)
    sampler = FixedMeanPoissonSampler(np.full((200, 250), mean))
    counts = np.concatenate([sampler.sample(rng).ravel() for _ in range(4)])
    assert counts.dtype == np.uint32
    n = counts.size
    # mean and variance agree with a Poisson law within 5 standard errors
    assert abs(counts.mean() - mean) < 5 * np.sqrt(mean / n)
    assert counts.var() == pytest.approx(mean, rel=max(0.05, 5 * np.sqrt(2 / n)))
    # histogram matches the probability mass function (chi-square test)
    kmax = int(stats.poisson.ppf(0.999, mean)) + 1
    observed = np.bincount(np.minimum(counts, kmax), minlength=kmax + 1)
    expected = stats.poisson.pmf(np.arange(kmax + 1), mean) * n
    expected[-1] = stats.poisson.sf(kmax - 1, mean) * n
    keep = expected > 5
    chi2 = (((observed - expected) ** 2 / expected)[keep]).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3


def test_mixed_means_keep_their_own_statistics():
    rng = np.random.default_rng(3)
    lam = np.where(np.arange(100_000) % 2 == 0, 0.1, 40.0).reshape(100, 1000)
    sampler = FixedMeanPoissonSampler(lam)
    counts = sampler.sample(rng)
    assert counts[lam == 0.1].mean() == pytest.approx(0.1, rel=0.05)
    assert counts[lam == 40.0].mean() == pytest.approx(40.0, rel=0.01)


def test_successive_frames_differ_and_negative_means_are_refused():
    rng = np.random.default_rng(0)
    sampler = FixedMeanPoissonSampler(np.full((50, 50), 1.0))
    assert not np.array_equal(sampler.sample(rng), sampler.sample(rng))
    with pytest.raises(ValueError):
        FixedMeanPoissonSampler(np.full((2, 2), -1.0))
