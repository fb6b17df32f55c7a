"""IVAE and IFlow against scikit-learn's estimator checks (``sklearn.utils.estimator_checks``).

Tiny settings (one epoch, a few hidden units) keep the whole file to a few seconds. The
checks that cannot apply are listed with the reason; ``xfail_strict`` makes a listed
check that starts passing fail here, so that the lists stay exact.
"""
from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from trends_ivae.estimators.flow import IFlow
from trends_ivae.estimators.ivae import IVAE

pytestmark = [pytest.mark.usefixtures("one_thread"),   # tests/conftest.py
              pytest.mark.filterwarnings("ignore")]   # identifiability and collinearity warnings on tiny data

#: u (the auxiliary variable) is fit's required second argument, where scikit-learn passes a target y
U_NOT_Y = {
    "check_fit_score_takes_y": "fit's second argument is the auxiliary variable u, named u, not y",
    "check_requires_y_none": "fit(X, None) says that u, the auxiliary variable, is required (not 'requires y')",
    "check_transformer_data_not_an_array": "the check calls fit(X, y=...): the second argument is named u",
    "check_transformer_general": "the check calls fit(X, y=...): the second argument is named u",
    "check_methods_subset_invariance": "score_samples(X, u) needs u beside X",
    "check_methods_sample_order_invariance": "score_samples(X, u) needs u beside X",
    "check_n_features_in_after_fitting": "the check calls score(X, y=...): the second argument is named u",
    "check_dtype_object": "X must be numeric: an array of dtype object is refused, not converted",
    "check_fit2d_predict1d": "a 1-D X is refused naming the 2-D shape it must have, not 'Reshape your data'",
}

#: the flow is square (n_components equals the features of X): the checks' X has other widths
SQUARE = "the flow is square: n_components must equal the number of features of the check's X"
FLOW_ONLY = {name: SQUARE for name in (
    "check_dont_overwrite_parameters", "check_positive_only_tag_during_fit", "check_estimators_dtypes",
    "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_transformer_preserve_dtypes", "check_dict_unchanged")}

ESTIMATORS = [
    IVAE(2, hidden_dim=4, n_hidden=1, max_epochs=1, batch_size=4, n_iwae=1, init="random",
         encoder_uses_aux=False, device="cpu"),   # q(z|x): transform(X) needs no u
    IFlow(2, transforms=1, hidden_dim=4, n_hidden=1, max_epochs=1, linear_epochs=1, batch_size=4,
          init="random", device="cpu"),
]


def expected_failed_checks(estimator) -> dict[str, str]:
    """The checks that cannot apply to ``estimator``, each with the reason."""
    if isinstance(estimator, IFlow):
        return {**U_NOT_Y, "check_fit_score_takes_y": SQUARE, "check_n_features_in_after_fitting": SQUARE,
                "check_transformer_general": SQUARE, "check_transformer_data_not_an_array": SQUARE,
                "check_methods_subset_invariance": SQUARE, "check_methods_sample_order_invariance": SQUARE,
                "check_fit2d_predict1d": SQUARE, **FLOW_ONLY}
    return dict(U_NOT_Y)


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks, xfail_strict=True)
def test_scikit_learn_conventions(estimator, check):
    check(estimator)


@pytest.mark.parametrize("est", [IVAE(2), IFlow(2)], ids=["IVAE", "IFlow"])
def test_unfitted_use_names_the_class(est):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match=f"this {type(est).__name__} is not fitted yet"):
        est.transform([[0.0, 0.0]], [0])
