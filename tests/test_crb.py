"""Tests of the Cramér–Rao bound (remap.crb)."""

import numpy as np
import pytest

from remap.crb import (bound_from_fisher, cramer_rao_bound, finite_difference_jacobian,
                       fisher_matrix, step_check)


def design(npix=200, seed=1):
    """A fixed (npix, 3) design matrix of Gaussian 'lines' responding to three labels."""
    x = np.linspace(0.0, 1.0, npix)
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.05, 0.95, (3, 4))
    return np.column_stack([np.exp(-0.5 * ((x[:, None] - c) / 0.01) ** 2).sum(1)
                            * (k + 1) * 0.01 for k, c in enumerate(centres)])


def test_linear_gaussian_model_matches_the_analytic_bound():
    a = design()
    offset = np.ones(a.shape[0])
    bound = cramer_rao_bound(lambda t: offset - a @ t, [0.3, -0.2, 1.0], [0.05, 0.05, 0.05],
                             snr=100.0)
    expected = np.sqrt(np.diag(np.linalg.inv(a.T @ a))) / 100.0
    np.testing.assert_allclose(bound, expected, rtol=1e-9)


def test_bound_scales_as_one_over_snr_and_has_the_documented_shape():
    a = design()
    labels = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    snr = np.array([50.0, 100.0, 200.0])
    bound = cramer_rao_bound(lambda t: a @ t, labels, [0.1, 0.1, 0.1], snr)
    assert bound.shape == (3, 2, 3)
    np.testing.assert_allclose(bound[0] / bound[1], 2.0, rtol=1e-12)
    np.testing.assert_allclose(bound[0] / bound[2], 4.0, rtol=1e-12)
    # a linear model has the same bound everywhere
    np.testing.assert_allclose(bound[:, 0], bound[:, 1], rtol=1e-9)
    assert cramer_rao_bound(lambda t: a @ t, labels[0], [0.1] * 3, 50.0).shape == (3,)


def test_nonlinear_model_central_differences_and_step_check():
    # f = exp(-t0) * g + t1^2 * h: derivatives known analytically
    x = np.linspace(0.0, 1.0, 300)
    g, h = np.sin(7 * x), np.cos(3 * x)

    def model(t):
        return np.exp(-t[0]) * g + t[1] ** 2 * h

    t0 = np.array([0.4, 0.7])
    jac = finite_difference_jacobian(model, t0, [1e-3, 1e-3])
    exact = np.column_stack([-np.exp(-t0[0]) * g, 2 * t0[1] * h])
    np.testing.assert_allclose(jac, exact, rtol=1e-6, atol=1e-9)
    f = exact.T @ exact * 80.0 ** 2
    np.testing.assert_allclose(cramer_rao_bound(model, t0, [1e-3, 1e-3], 80.0),
                               np.sqrt(np.diag(np.linalg.inv(f))), rtol=1e-5)
    # small steps are stable under halving, a step comparable to the curvature scale is not
    assert np.all(np.abs(step_check(model, t0, [1e-3, 1e-3])) < 1e-5)
    assert np.max(np.abs(step_check(model, t0, [2.0, 2.0]))) > 0.05


def test_marginal_bound_exceeds_conditional_bound_for_correlated_labels():
    x = np.linspace(0, 1, 100)
    a = np.column_stack([x, x + 0.1 * np.sin(20 * x)])    # nearly degenerate labels
    bound = cramer_rao_bound(lambda t: a @ t, [0.0, 0.0], [0.1, 0.1], 1.0)
    conditional = 1.0 / np.sqrt(np.diag(a.T @ a))
    assert np.all(bound > 3 * conditional)


def test_one_sided_differences_at_the_domain_edge():
    calls = []

    def model(t):
        calls.append(t.copy())
        if t[0] > 1.0 or t[0] < 0.0:
            raise AssertionError("left the domain")
        return np.array([2.0 * t[0], 3.0 * t[1], t[0] + t[1]])

    jac = finite_difference_jacobian(model, [0.99, 0.5], [0.05, 0.05],
                                     bounds=[(0.0, 1.0), (0.0, 1.0)])
    np.testing.assert_allclose(jac, [[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    assert all(0.0 <= c[0] <= 1.0 for c in calls)
    with pytest.raises(ValueError, match="outside the bounds"):
        finite_difference_jacobian(model, [1.5, 0.5], [0.05, 0.05],
                                   bounds=[(0.0, 1.0), (0.0, 1.0)])
    with pytest.raises(ValueError, match="wider than its domain"):
        finite_difference_jacobian(model, [0.5, 0.5], [0.6, 0.05],
                                   bounds=[(0.0, 1.0), (0.0, 1.0)])


def test_noise_profile_and_singular_fisher_matrix():
    a = design()
    sigma = np.linspace(0.5, 2.0, a.shape[0])
    f = fisher_matrix(a, 10.0, sigma=sigma)
    np.testing.assert_allclose(f, (a / sigma[:, None]).T @ (a / sigma[:, None]) * 100.0)
    # a label the spectrum does not depend on has no bound
    singular = np.column_stack([a[:, 0], np.zeros(a.shape[0])])
    assert np.all(np.isinf(bound_from_fisher(fisher_matrix(singular, 50.0))))
    assert np.all(np.isinf(bound_from_fisher(np.array([[1.0, 1.0], [1.0, 1.0]]))))


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": [0.1, 0.1]}, "one step per label"),
    ({"steps": [0.1, 0.0, 0.1]}, "positive"),
    ({"snr": -5.0}, "snr"),
    ({"snr": [50.0, np.nan]}, "snr"),
])
def test_bad_arguments_raise(kwargs, match):
    a = design()
    args = {"steps": [0.1, 0.1, 0.1], "snr": 50.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        cramer_rao_bound(lambda t: a @ t, [0.0, 0.0, 0.0], args["steps"], args["snr"])


def test_fisher_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        fisher_matrix(np.ones(5))
    with pytest.raises(ValueError, match="snr"):
        fisher_matrix(np.ones((5, 2)), 0.0)
    with pytest.raises(ValueError, match="sigma"):
        fisher_matrix(np.ones((5, 2)), 1.0, sigma=np.ones(4))
    with pytest.raises(ValueError, match="factor"):
        step_check(lambda t: t, [1.0], [0.1], factor=2.0)
