"""SHAP explanations: additivity, agreement with other TreeSHAP code, reason codes, importance.

One small model (see ``_small_model.py``) explains a 2,500-loan tape: the whole tape goes
through the compiled TreeSHAP tables, a handful of loans through LightGBM's own TreeSHAP.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest
import shap

from _small_model import explain_tape as tape
from _small_model import trained_model
from npl_engine import explain
from npl_engine.errors import NplError
from npl_engine.explain import (
    LoanExplanations,
    explain_loans,
    format_value,
    global_importance,
    plot_importance,
    prepare_explanations,
    reason_codes,
    reason_columns,
)
from npl_engine.scoring import RecoveryModel
from npl_engine.treeshap import compile_booster, tree_shap

FEW = ["T00000001", "T00000002", "T00000003", "T00000010", "T00000042"]


@pytest.fixture(scope="module")
def model() -> RecoveryModel:
    """The shared small model."""
    return trained_model()


@pytest.fixture(scope="module")
def loans() -> pl.DataFrame:
    """The shared tape's loans."""
    return tape().loans


@pytest.fixture(scope="module")
def explained(model: RecoveryModel, loans: pl.DataFrame) -> LoanExplanations:
    """Every loan of the tape explained (compiled TreeSHAP path)."""
    return explain_loans(model, loans)


@pytest.fixture(scope="module")
def explained_few(model: RecoveryModel, loans: pl.DataFrame) -> LoanExplanations:
    """A few loans explained (LightGBM TreeSHAP path)."""
    return explain_loans(model, loans, loan_ids=FEW)


def _boosters(model: RecoveryModel) -> list[tuple[str, lgb.Booster, int | None]]:
    """Each explained booster with the iterations scoring uses."""
    totals = model.collections_.totals_
    return [
        ("classifier", model.classifier_.booster_, None),
        *((ch, b, b.best_iteration) for ch, b in totals.items()),
    ]


# -- additivity ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["explained", "explained_few"])
def test_log_odds_values_add_up_to_the_classifier_margin(
    which: str, model: RecoveryModel, request: pytest.FixtureRequest
) -> None:
    """Per loan, log-odds SHAP values plus the base margin equal the booster's raw margin."""
    ex: LoanExplanations = request.getfixturevalue(which)
    a = ex.attributions["p_recover"]
    margin = model.classifier_.booster_.predict(ex.matrix.values, raw_score=True)
    total = a.link_values["classifier"].sum(axis=1) + a.link_base["classifier"]
    np.testing.assert_allclose(total, margin, rtol=0, atol=1e-10)


@pytest.mark.parametrize("which", ["explained", "explained_few"])
def test_log_values_add_up_to_each_collections_booster(
    which: str, model: RecoveryModel, request: pytest.FixtureRequest
) -> None:
    """Per loan and channel, log SHAP values plus the base equal the Poisson booster's raw log.

    Collateral values exist exactly for loans with net collateral (the others get no sale
    cash from the model and are NaN).
    """
    ex: LoanExplanations = request.getfixturevalue(which)
    a = ex.attributions["expected_collections"]
    secured = np.nan_to_num(ex.features["net_collateral_cover"].to_numpy()) > 0
    for channel, booster in model.collections_.totals_.items():
        raw = booster.predict(
            ex.matrix.values, raw_score=True, num_iteration=booster.best_iteration
        )
        values = a.link_values[channel]
        rows = secured if channel == "collateral" else np.ones(secured.size, dtype=bool)
        assert np.isnan(values[~rows]).all()
        total = values[rows].sum(axis=1) + a.link_base[channel]
        np.testing.assert_allclose(total, raw[rows], rtol=0, atol=1e-10)


@pytest.mark.parametrize("which", ["explained", "explained_few"])
def test_points_add_up_to_p_recover_minus_its_base(
    which: str, model: RecoveryModel, request: pytest.FixtureRequest
) -> None:
    """Point contributions add up to p_recover - p_base; p_recover is exactly the scored one.

    p_base = calibrator(sigmoid(base margin)): the calibrated probability of the model's
    expected margin.
    """
    ex: LoanExplanations = request.getfixturevalue(which)
    a = ex.attributions["p_recover"]
    scored = model.score(ex.features.select("loan_id").join(tape().loans, on="loan_id").lazy())
    np.testing.assert_array_equal(a.output, scored.scores["p_recover"].to_numpy())
    sigmoid = 1 / (1 + math.exp(-a.link_base["classifier"]))
    p_base = model.classifier_.calibrator_.predict(np.array([sigmoid]))[0]
    np.testing.assert_allclose(a.base, p_base, rtol=0, atol=1e-15)
    np.testing.assert_allclose(a.contributions.sum(axis=1), a.output - a.base, rtol=0, atol=1e-12)


@pytest.mark.parametrize("which", ["explained", "explained_few"])
def test_money_adds_up_to_expected_collections_minus_its_base(
    which: str, model: RecoveryModel, request: pytest.FixtureRequest
) -> None:
    """Money contributions add up to expected_collections - base; output is the scored one.

    base = exposure × (exp(borrower expected value) + exp(collateral expected value)).
    """
    ex: LoanExplanations = request.getfixturevalue(which)
    a = ex.attributions["expected_collections"]
    scored = model.score(ex.features.select("loan_id").join(tape().loans, on="loan_id").lazy())
    np.testing.assert_allclose(
        a.output, scored.scores["expected_collections"].to_numpy(), rtol=1e-9, atol=1e-6
    )
    exposure = ex.features["exposure"].to_numpy()
    base = exposure * sum(math.exp(v) for v in a.link_base.values())
    np.testing.assert_allclose(a.base, base, rtol=1e-12)
    np.testing.assert_allclose(
        a.contributions.sum(axis=1), a.output - a.base, rtol=0, atol=1e-9 * exposure.max()
    )


def test_converted_contributions_keep_the_sign_of_the_log_odds(
    explained: LoanExplanations,
) -> None:
    """A feature that raises the log-odds never lowers p_recover (the calibrator is monotone)."""
    a = explained.attributions["p_recover"]
    link = a.link_values["classifier"]
    points = a.contributions
    assert (points * link >= 0).all()
    moved = a.output != a.base
    assert (np.sign(points[moved]) == np.sign(link[moved])).mean() > 0.99


def test_unsecured_loans_owe_the_missing_collateral_base_to_net_collateral_cover(
    explained: LoanExplanations,
) -> None:
    """Without net collateral, the collateral channel's 0 - base goes to net_collateral_cover."""
    a = explained.attributions["expected_collections"]
    unsecured = ~(np.nan_to_num(explained.features["net_collateral_cover"].to_numpy()) > 0)
    assert 100 < unsecured.sum() < unsecured.size - 100
    j = explained.names.index("net_collateral_cover")
    exposure = explained.features["exposure"].to_numpy()
    borrower = a.link_values["borrower"]
    base_b, base_c = a.link_base["borrower"], a.link_base["collateral"]
    # Borrower channel share of net_collateral_cover, by the same proportional rule.
    change_b = exposure * (np.exp(borrower.sum(axis=1) + base_b) - np.exp(base_b))
    share_b = borrower[:, j] * change_b / borrower.sum(axis=1)
    expected = share_b - exposure * math.exp(base_c)
    np.testing.assert_allclose(
        a.contributions[unsecured, j], expected[unsecured], rtol=1e-9, atol=1e-6
    )


# -- agreement with other TreeSHAP implementations ------------------------------------------


def test_compiled_tables_match_lightgbm_pred_contrib(
    model: RecoveryModel, loans: pl.DataFrame
) -> None:
    """The compiled per-leaf tables give LightGBM's TreeSHAP values on every loan, and its bias."""
    _, x = model.features(loans.lazy())
    for name, booster, iterations in _boosters(model):
        trees = compile_booster(booster, num_iteration=iterations)
        assert trees is not None, name
        ref = booster.predict(x.values, pred_contrib=True, num_iteration=iterations)
        np.testing.assert_allclose(tree_shap(trees, x.values), ref[:, :-1], rtol=0, atol=1e-10)
        assert trees.expected_value == pytest.approx(ref[0, -1], abs=1e-12)


def test_a_prepared_model_explains_a_few_loans_with_its_compiled_tables(
    model: RecoveryModel,
    loans: pl.DataFrame,
    explained_few: LoanExplanations,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """prepare_explanations (the service's): few loans through the tables, LightGBM's values."""
    prepared = RecoveryModel.load(model.save(tmp_path / "model"))  # not the shared model
    prepare_explanations(prepared)
    rows: list[int] = []
    compiled = explain.tree_shap
    monkeypatch.setattr(
        explain, "tree_shap", lambda trees, x: rows.append(x.shape[0]) or compiled(trees, x)
    )
    fast = explain_loans(prepared, loans, loan_ids=FEW)
    assert len(rows) == len(_boosters(prepared))  # every booster through its tables
    assert max(rows) <= len(FEW)
    for target, reference in explained_few.attributions.items():
        got = fast.attributions[target]
        np.testing.assert_allclose(got.contributions, reference.contributions, atol=1e-8)
        np.testing.assert_allclose(got.base, reference.base, rtol=1e-12)
    texts = reason_codes(fast)["text"].to_list()
    assert texts == reason_codes(explained_few)["text"].to_list()


def test_values_agree_with_shap_tree_explainer(
    model: RecoveryModel, explained_few: LoanExplanations
) -> None:
    """shap.TreeExplainer gives the same values and base for the classifier and both totals.

    For LightGBM models shap delegates to LightGBM's C++ TreeSHAP, so this checks how the
    boosters are called (iterations, column order, bias), not the algorithm: the test below
    does that from the definition.
    """
    x = explained_few.matrix.values
    a_p = explained_few.attributions["p_recover"]
    a_c = explained_few.attributions["expected_collections"]
    mine = {"classifier": (a_p.link_values["classifier"], a_p.link_base["classifier"])}
    mine |= {ch: (a_c.link_values[ch], a_c.link_base[ch]) for ch in ("borrower", "collateral")}
    for name, booster, iterations in _boosters(model):
        explainer = shap.TreeExplainer(booster)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # shap's note on binary LightGBM output
            values = explainer.shap_values(x, tree_limit=iterations or -1)
        ours, base = mine[name]
        rows = ~np.isnan(ours).any(axis=1)
        assert rows.sum() >= 2
        np.testing.assert_allclose(ours[rows], values[rows], rtol=0, atol=1e-10)
        assert float(np.ravel(explainer.expected_value)[0]) == pytest.approx(base, abs=1e-12)


def _decides_left(node: dict[str, Any], value: float) -> bool:
    """LightGBM's split rule (tree.h: NumericalDecision, CategoricalDecision)."""
    if node["decision_type"] == "==":
        if math.isnan(value) or value < 0:
            return False
        return int(value) in {int(c) for c in str(node["threshold"]).split("||")}
    missing = node["missing_type"]
    if math.isnan(value) and missing != "NaN":
        value = 0.0
    if (missing == "Zero" and abs(value) <= 1e-35) or (missing == "NaN" and math.isnan(value)):
        return bool(node["default_left"])
    return value <= float(node["threshold"])


def _count(node: dict[str, Any]) -> float:
    return float(node.get("internal_count", node.get("leaf_count", 0)))


def _shapley_from_definition(tree: dict[str, Any], row: np.ndarray) -> tuple[np.ndarray, float]:
    """Shapley values of one tree's path-dependent value function, by enumerating coalitions.

    v(S) = expected leaf value when the features in S follow the row's path and every other
    split divides the weight by training counts (Lundberg et al. 2020, Algorithm 1);
    phi_i = sum over S without i of |S|! (d-|S|-1)! / d! (v(S ∪ {i}) - v(S)), over the d
    features the tree uses. Exponential in d, so only for checking.
    """
    used: list[int] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if "split_index" in node:
            used.append(int(node["split_feature"]))
            stack += [node["left_child"], node["right_child"]]
    features = sorted(set(used))
    d = len(features)
    phi = np.zeros(row.size)
    if d == 0:
        return phi, float(tree["leaf_value"])
    position = {f: k for k, f in enumerate(features)}
    subsets = np.arange(2**d)
    member = ((subsets[:, None] >> np.arange(d)) & 1).astype(bool)
    value = np.zeros(2**d)
    walk: list[tuple[dict[str, Any], np.ndarray]] = [(tree, np.ones(2**d))]
    while walk:
        node, weight = walk.pop()
        if "split_index" not in node:
            value += weight * float(node["leaf_value"])
            continue
        feature = int(node["split_feature"])
        inside = member[:, position[feature]]
        left = _decides_left(node, float(row[feature]))
        for child, goes in ((node["left_child"], left), (node["right_child"], not left)):
            share = _count(child) / _count(node)
            walk.append((child, weight * np.where(inside, float(goes), share)))
    size = member.sum(axis=1)
    for feature, k in position.items():
        s = subsets[~member[:, k]]
        w = np.array([math.factorial(n) * math.factorial(d - n - 1) for n in size[s]])
        phi[feature] = np.sum(w / math.factorial(d) * (value[s | (1 << k)] - value[s]))
    return phi, float(value[-1])


def test_treeshap_equals_shapley_values_computed_from_their_definition(
    model: RecoveryModel, loans: pl.DataFrame
) -> None:
    """Over the first 12 trees of each booster, compiled and LightGBM TreeSHAP equal brute force.

    Rows include missing numeric and categorical values; the brute force's own prediction
    (all features in the coalition) must equal LightGBM's, which checks the split rule.
    """
    _, x = model.features(loans.lazy())
    has_nan = np.isnan(x.values)
    cat_nan = has_nan[:, list(x.categorical)].any(axis=1)
    rows = [
        int(np.flatnonzero(~has_nan.any(axis=1))[0]),
        int(np.flatnonzero(has_nan[:, : min(x.categorical)].any(axis=1))[0]),
        int(np.flatnonzero(cat_nan)[0]) if cat_nan.any() else 2,
    ]
    n_trees = 12
    for name, booster, _ in _boosters(model):
        dump = booster.dump_model(num_iteration=n_trees)["tree_info"]
        trees = compile_booster(booster, num_iteration=n_trees)
        assert trees is not None
        for r in rows:
            row = x.values[r]
            parts = [_shapley_from_definition(t["tree_structure"], row) for t in dump]
            brute = np.sum([phi for phi, _ in parts], axis=0)
            raw = booster.predict(row[None, :], raw_score=True, num_iteration=n_trees)[0]
            assert sum(f for _, f in parts) == pytest.approx(raw, abs=1e-10), name
            lgbm = booster.predict(row[None, :], pred_contrib=True, num_iteration=n_trees)[0, :-1]
            np.testing.assert_allclose(lgbm, brute, rtol=0, atol=1e-10, err_msg=name)
            np.testing.assert_allclose(
                tree_shap(trees, row[None, :])[0], brute, rtol=0, atol=1e-10, err_msg=name
            )


# -- reason codes ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def codes(explained: LoanExplanations) -> pl.DataFrame:
    """Top-3 reason codes of every loan of the tape."""
    return reason_codes(explained, top=3)


def test_reason_codes_are_the_largest_contributions_in_order(
    explained: LoanExplanations, codes: pl.DataFrame
) -> None:
    """Ranks 1..3 are the features with the largest |contribution|, with their amounts."""
    for target, a in explained.attributions.items():
        mine = codes.filter(pl.col("target") == target)
        for i in (0, 7, 1234):
            loan = explained.loan_id[i]
            got = mine.filter(pl.col("loan_id") == loan).sort("rank")
            order = np.argsort(-np.abs(a.contributions[i]), kind="stable")[: got.height]
            assert got["feature"].to_list() == [explained.names[j] for j in order]
            np.testing.assert_array_equal(got["contribution"], a.contributions[i, order])
        assert mine["rank"].max() == 3


def test_reason_codes_name_the_right_direction(codes: pl.DataFrame) -> None:
    """'raises' exactly when the contribution is positive, and the sentence says so."""
    up = codes["contribution"] > 0
    assert ((codes["direction"] == "raises") == up).all()
    assert codes.filter(up)["text"].str.contains(" raises ").all()
    assert codes.filter(~up)["text"].str.contains(" lowers ").all()
    assert (codes["contribution"] != 0).all()
    points = codes.filter(pl.col("target") == "p_recover")
    assert points["text"].str.ends_with(" points").all()
    assert points["text"].str.contains("the recovery probability by").all()


def test_top_positive_driver_raises_p_recover(
    explained: LoanExplanations, codes: pl.DataFrame
) -> None:
    """For the loan most above the base, rank 1 raises p_recover by its points."""
    a = explained.attributions["p_recover"]
    i = int(np.argmax(a.output - a.base))
    top = codes.filter(
        (pl.col("loan_id") == explained.loan_id[i]) & (pl.col("target") == "p_recover")
    ).row(0, named=True)
    assert top["rank"] == 1
    assert top["direction"] == "raises"
    assert top["contribution"] == a.contributions[i].max()
    assert (
        f"by {100 * top['contribution']:.{0 if top['contribution'] >= 0.0995 else 1}f}"
        in (top["text"])
    )


def test_low_and_high_follow_the_tape_median(
    explained: LoanExplanations, codes: pl.DataFrame
) -> None:
    """'low' below the tape's median, 'high' above it, neither for categories or missing."""
    ref = explained.reference
    checked = 0
    for r in codes.iter_rows(named=True):
        column = ref[r["feature"]]
        x = explained.features.filter(pl.col("loan_id") == r["loan_id"])[r["feature"]][0]
        words = r["text"].split(" ")[0]
        if column.dtype == pl.String or x is None:
            assert words not in ("low", "high"), r["text"]
            continue
        median = column.median()
        assert isinstance(median, float)
        expected = "low" if x < median else "high" if x > median else None
        assert (words if words in ("low", "high") else None) == expected, r["text"]
        checked += 1
        if checked > 400:
            break
    assert checked > 400


def test_gender_never_appears(
    model: RecoveryModel,
    loans: pl.DataFrame,
    explained: LoanExplanations,
    explained_few: LoanExplanations,
    codes: pl.DataFrame,
) -> None:
    """No feature, label or sentence mentions gender; changing every gender changes nothing."""
    assert not [n for n in explained.names if "gender" in n]
    mentions = codes.select(pl.col("feature", "label", "text").str.contains("(?i)gender").any())
    assert not any(mentions.row(0))
    assert not codes["text"].str.contains("(?i)female|male").any()
    rotated = loans.with_columns(
        pl.col("gender").shift(1).fill_null(pl.col("gender").first()).alias("gender")
    )
    assert (rotated["gender"] != loans["gender"]).fill_null(value=True).any()
    again = explain_loans(model, rotated, loan_ids=FEW)
    for target, a in again.attributions.items():
        before = explained_few.attributions[target]
        np.testing.assert_array_equal(a.contributions, before.contributions)


def test_loans_at_the_base_get_no_reason_code(
    explained: LoanExplanations, codes: pl.DataFrame
) -> None:
    """Where the calibrated p_recover equals p_base, no feature moved it: no p_recover code."""
    a = explained.attributions["p_recover"]
    at_base = explained.loan_id.filter(pl.Series(a.output == a.base))
    assert (a.contributions[a.output == a.base] == 0).all()
    listed = codes.filter(pl.col("target") == "p_recover")["loan_id"]
    assert not at_base.is_in(listed.implode()).any()


def test_reason_columns_hold_the_top_three_texts(codes: pl.DataFrame) -> None:
    """The wide form has reason_1..3 and collections_reason_1..3 with the long form's text."""
    wide = reason_columns(codes, top=3)
    assert wide.columns == [
        "loan_id",
        *(f"reason_{r}" for r in (1, 2, 3)),
        *(f"collections_reason_{r}" for r in (1, 2, 3)),
    ]
    by = {
        (loan, t, k): s
        for loan, t, k, s in codes.select("loan_id", "target", "rank", "text").iter_rows()
    }
    # every loan's columns hold the long form's text at that rank (null where a loan has fewer)
    for row in wide.head(50).iter_rows(named=True):
        for r in (1, 2, 3):
            assert row[f"reason_{r}"] == by.get((row["loan_id"], "p_recover", r))
            assert row[f"collections_reason_{r}"] == by.get(
                (row["loan_id"], "expected_collections", r)
            )
    assert wide["reason_2"].null_count() < wide.height  # the check above saw some texts


def test_unknown_loan_id_is_an_npl_error(model: RecoveryModel, loans: pl.DataFrame) -> None:
    """Asking for a loan that is not in the tape names it in the error."""
    with pytest.raises(NplError, match="'NOPE-1' not found among the 2,500 loans"):
        explain_loans(model, loans, loan_ids=["T00000001", "NOPE-1"])


def test_nothing_to_explain_is_an_npl_error(model: RecoveryModel, loans: pl.DataFrame) -> None:
    """An empty selection of loans is refused with a message, not a numpy error."""
    with pytest.raises(NplError, match="no loans to explain"):
        explain_loans(model, loans, loan_ids=[])


@pytest.mark.parametrize(
    ("feature", "value", "text"),
    [
        ("on_time_payment_rate", 0.4213, "0.42"),
        ("net_collateral_cover", 1.3549, "1.35"),
        ("monthly_income", 12_300.4, "12,300"),
        ("exposure", 1_234_567.0, "1,234,567"),
        ("log_exposure", math.log(12_300.0), "12,300"),
        ("credit_score", 612.0, "612"),
        ("months_since_last_payment", 1.2, "1 month"),
        ("months_since_default", 14.6, "15 months"),
        ("employment_years", 3.5, "3.5 years"),
        ("age", 45.0, "45 years"),
        ("interest_rate", 0.0525, "5.25%"),
        ("legal_stage", "pre_legal", "pre legal"),
        ("credit_score", None, "missing"),
        ("debt_to_income", float("nan"), "missing"),
    ],
)
def test_values_read_as_a_collector_would(feature: str, value: object, text: str) -> None:
    """Rates to two decimals, money with separators, units for time, text for categories."""
    assert format_value(feature, value) == text


# -- global importance ----------------------------------------------------------------------


def test_global_importance_is_mean_absolute_contribution_on_a_seeded_sample(
    model: RecoveryModel, loans: pl.DataFrame
) -> None:
    """The frame is the mean |contribution| of the sampled loans; same seed, same sample."""
    a = global_importance(model, loans, sample=300, seed=7)
    assert a.equals(global_importance(model, loans, sample=300, seed=7))
    assert not a.equals(global_importance(model, loans, sample=300, seed=8))
    assert a.height == len(model.features(loans.head(1).lazy())[1].names)
    assert a["p_recover_points"].is_sorted(descending=True)
    drawn = loans["loan_id"].gather(
        np.sort(np.random.default_rng(7).choice(loans.height, 300, replace=False))
    )
    ex = explain_loans(model, loans, loan_ids=drawn.to_list())
    mean_points = dict(
        zip(ex.names, 100 * np.abs(ex.attributions["p_recover"].contributions).mean(0), strict=True)
    )
    for r in a.iter_rows(named=True):
        assert r["p_recover_points"] == pytest.approx(mean_points[r["feature"]], rel=1e-12)
    assert "gender" not in a["feature"].to_list()


def test_importance_chart_is_a_png(
    model: RecoveryModel, loans: pl.DataFrame, tmp_path: Path
) -> None:
    """plot_importance writes a PNG file at the path given."""
    out = plot_importance(global_importance(model, loans, sample=200), tmp_path / "chart.png")
    assert out == tmp_path / "chart.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_shap_explanations_carry_the_engine_values_and_shap_plots_them(
    model: RecoveryModel, explained_few: LoanExplanations, tmp_path: Path
) -> None:
    """to_shap: the reason codes' contributions as they are; raw values shap.TreeExplainer's."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    money = explained_few.to_shap("expected_collections")
    a = explained_few.attributions["expected_collections"]
    np.testing.assert_array_equal(money.values, a.contributions)
    np.testing.assert_array_equal(money.base_values, a.base)
    np.testing.assert_allclose(money.values.sum(axis=1) + money.base_values, a.output, rtol=1e-9)
    assert money.feature_names == list(explained_few.names)
    assert list(money.instance_names) == FEW
    raw = explained_few.to_shap("p_recover", booster="classifier")
    booster = model.classifier_.booster_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # shap's note on binary LightGBM output
        explainer = shap.TreeExplainer(booster)
        reference = explainer.shap_values(explained_few.matrix.values)
    np.testing.assert_allclose(raw.values, reference, rtol=0, atol=1e-10)
    np.testing.assert_allclose(raw.base_values, np.ravel(explainer.expected_value)[0], atol=1e-12)
    shap.plots.waterfall(money[0], show=False)
    plt.savefig(tmp_path / "waterfall.png")
    plt.close("all")
    assert (tmp_path / "waterfall.png").stat().st_size > 0
    with pytest.raises(NplError, match="no booster 'borrower'"):
        explained_few.to_shap("p_recover", booster="borrower")
