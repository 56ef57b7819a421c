"""Ensembles: voting arithmetic, selection that cannot see PrivateTest, and TTA."""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest
from scipy.special import softmax

from fer_utils import ensemble as ens
from fer_utils.config import results_dir
from fer_utils.errors import UsageError
from fer_utils.evaluation import metrics, predict
from fer_utils.runs import read_run, write_run
from fer_utils.tta import TTA


def one_hot(labels: list[int], confidence: float = 0.9) -> np.ndarray:
    """Probabilities that put ``confidence`` on each label and spread the rest evenly."""
    probs = np.full((len(labels), 7), (1 - confidence) / 6)
    probs[np.arange(len(labels)), labels] = confidence
    return probs


def save_member(
    name: str, splits: dict[str, tuple[np.ndarray, np.ndarray]], kind: str = "trained", **fields
) -> None:
    """Record a run ``name`` of the cpu profile (``kind`` and ``fields`` as in write_run)."""
    (results_dir() / "predictions").mkdir(parents=True, exist_ok=True)
    write_run(name, kind, "toy", "test", "cpu", "sha", 1.0, splits, **fields)


@pytest.fixture
def three_members() -> tuple[list[int], dict[str, np.ndarray]]:
    """Five faces, three members each right on a different three of them."""
    labels = [0, 1, 2, 3, 4]
    members = {
        "a": one_hot([0, 1, 2, 0, 0], 0.6),  # right on faces 0, 1, 2
        "b": one_hot([1, 1, 2, 3, 1], 0.5),  # right on 1, 2, 3
        "c": one_hot([0, 2, 0, 3, 4], 0.4),  # right on 0, 3, 4
    }
    return labels, members


def test_soft_vote_of_identical_members_equals_the_member(three_members):
    _, members = three_members
    same = np.stack([members["a"]] * 4)
    np.testing.assert_allclose(ens.soft_vote(same), members["a"])
    np.testing.assert_allclose(ens.soft_vote(same, [0.1, 0.2, 0.3, 0.4]), members["a"])


def test_three_model_toy_case_gives_the_hand_computed_accuracy(three_members):
    labels, members = three_members
    for name, probs in members.items():
        save_member(name, {"PublicTest": (labels, probs), "PrivateTest": (labels, probs)})
    validation = ens.load_split(["a", "b", "c"], "PublicTest")
    vote = ens.uniform(validation).predict(validation)
    # By hand, the mean probability per face: face 0: class 0 gets (0.6+0.1+0.4)/3 (a, c) vs
    # class 1 (0.08+0.5+0.1)/3 → 0 ✓; face 1: class 1 from a and b → ✓; face 2: class 2
    # from a and b → ✓; face 3: a says 0 (0.6), b and c say 3 (0.5, 0.4) → 3 ✓; face 4: a says
    # 0 (0.6), b says 1 (0.5), c says 4 (0.4) → 0 ✗. So 4 of 5 right.
    assert metrics(np.array(labels), vote)["accuracy"] == pytest.approx(0.8)
    assert vote.argmax(1).tolist() == [0, 1, 2, 3, 0]


def test_selection_never_reads_private_test(three_members):
    labels, members = three_members
    for name, probs in members.items():  # no PrivateTest predictions exist at all
        save_member(name, {"PublicTest": (labels, probs)})
    validation = ens.load_split(["a", "b", "c"], "PublicTest")
    fitted = [ens.uniform(validation), ens.fit_weights(validation)]
    fitted.append(ens.greedy_selection(validation)[0])
    assert all(abs(e.weights.sum() - 1) < 1e-9 for e in fitted)
    with pytest.raises(UsageError, match="no PrivateTest predictions"):
        ens.load_split(["a"], "PrivateTest")
    private = ens.SplitPredictions("PrivateTest", np.array(labels), ("a",), members["a"][None])
    for fit in (ens.uniform, ens.fit_weights, ens.greedy_selection, ens.fit_stacking):
        with pytest.raises(ValueError, match="chosen on PublicTest only"):
            fit(private)


def test_selection_prefers_the_better_member_and_records_the_ensemble(three_members):
    labels, members = three_members
    rng = np.random.default_rng(0)
    noise = rng.dirichlet(np.ones(7), len(labels))  # a member that knows nothing
    splits = {s: (labels, members["a"]) for s in ("PublicTest", "PrivateTest")}
    save_member("good", splits)
    save_member("noise", {s: (labels, noise) for s in ("PublicTest", "PrivateTest")})
    validation = ens.load_split(["good", "noise"], "PublicTest")
    chosen, order = ens.greedy_selection(validation)
    assert order[0] == "good" and chosen.describe().get("good", 0) > 0.5
    assert ens.fit_weights(validation).describe()["good"] > 0.5
    record = ens.record_ensemble(chosen, "toy-ensemble", validation, "test")
    stored = json.loads((results_dir() / "toy-ensemble.json").read_text())
    assert stored["metrics"] == record.metrics and read_run("toy-ensemble") == record
    assert record.kind == "ensemble" and record.details["members"] == chosen.describe()
    assert record.metrics["PrivateTest"]["accuracy"] == pytest.approx(0.6)


def test_cross_validation_within_public_test_rejects_a_method_that_does_not_carry_over():
    """One right member and three that agree on the same wrong class: voting them all is
    wrong everywhere, so cross-validation must score uniform voting near 0 and choose a
    fitted method, whose ensemble is then right; PrivateTest is refused."""
    labels = np.arange(70) % 7
    wrong = one_hot(list((labels + 1) % 7), 0.9)
    members = np.stack([one_hot(list(labels), 0.6), wrong, wrong, wrong])
    names = ("right", "wrong1", "wrong2", "wrong3")
    validation = ens.SplitPredictions("PublicTest", labels, names, members)
    scores = ens.cross_validate(validation)
    assert scores["uniform"] < 0.05 and scores["greedy"] > 0.95 and scores["weights"] > 0.95
    assert ens.fit_weights(validation).names == ("right",)  # negligible weights are dropped
    chosen, _ = ens.cross_validated(validation)
    assert metrics(validation.labels, chosen.predict(validation))["accuracy"] == 1.0
    with pytest.raises(ValueError, match="chosen on PublicTest only"):
        ens.cross_validate(ens.SplitPredictions("PrivateTest", labels, names, members))


def test_stacking_subtracts_what_members_share_and_beats_any_convex_vote():
    """Member A sees the true class through noise that member B sees alone: A's logits minus
    B's are the clean signal. No convex vote can subtract, so voting stays as noisy as A;
    log-space stacking learns a negative weight for B and is right on faces it did not fit.
    Identical members with weights summing to 1 pool back to the member itself."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 1400)
    noise = rng.normal(0, 3, (len(labels), 7))
    signal = 3 * np.eye(7)[labels]
    members = np.stack([softmax(signal + noise, axis=1), softmax(noise, axis=1)])
    fit, held = slice(0, 700), slice(700, None)
    validation = ens.SplitPredictions("PublicTest", labels[fit], ("a", "b"), members[:, fit])
    heldout = ens.SplitPredictions("PublicTest", labels[held], ("a", "b"), members[:, held])
    stacked, voted = ens.fit_stacking(validation), ens.fit_weights(validation)
    weights = stacked.describe()
    assert stacked.pool == "log" and weights["b"] < -0.5 * weights["a"] < 0
    stacked_acc, voted_acc = (
        metrics(heldout.labels, e.predict(heldout))["accuracy"] for e in (stacked, voted)
    )
    assert stacked_acc > 0.95 > voted_acc + 0.2
    same = ens.Ensemble(("a", "a"), np.array([0.3, 0.7]), pool="log")
    np.testing.assert_allclose(same.combine(members[[0, 0]]), members[0], atol=1e-6)


def test_every_ensemble_run_records_its_cross_validated_publictest_accuracy():
    """The ``ensemble`` command stores the held-out score its method earns within PublicTest,
    which is what ensembles are ranked by (their own PublicTest accuracy is in-sample)."""
    from fer_utils.cli import main

    labels = np.arange(70) % 7
    wrong = one_hot(list((labels + 1) % 7), 0.9)
    for name, probs in (
        ("right", one_hot(list(labels), 0.6)),
        ("wrong1", wrong),
        ("wrong2", wrong),
    ):
        save_member(name, {s: (labels, probs) for s in ("PublicTest", "PrivateTest")})
    for method, expected in (("uniform", 0.0), ("greedy", 1.0), ("cv", 1.0)):
        assert main(["ensemble", "right", "wrong1", "wrong2", "--method", method,
                     "--name", f"toy-{method}"]) == 0  # fmt: skip
        record = json.loads((results_dir() / f"toy-{method}.json").read_text())
        assert record["cv_accuracy"] == pytest.approx(expected)


def test_an_ensemble_counts_each_training_once():
    """``x`` and its TTA evaluation are one training evaluated twice: the ensemble's time counts
    it once."""
    labels = np.arange(70) % 7
    splits = {s: (labels, one_hot(list(labels))) for s in ("PublicTest", "PrivateTest")}
    save_member("x", splits)
    save_member("x-tta", splits, "tta", tta="shifts", trained_by="x")
    save_member("y", splits)
    validation = ens.load_split(["x", "x-tta", "y"], "PublicTest")
    record = ens.record_ensemble(ens.uniform(validation), "toy-time", validation, "test")
    assert record.train_seconds == pytest.approx(2.0)  # save_member records 1 s per run


def test_an_unknown_ensemble_method_lists_the_methods_there_are(capsys):
    from fer_utils.cli import main

    assert main(["ensemble", "a", "b", "--method", "greedyy"]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in (*ens.METHODS, "cv")) and "Traceback" not in err


def test_tta_of_a_flip_invariant_model_changes_nothing():
    keras.utils.set_random_seed(0)
    # values in 0-1: on 0-255 the flat model's softmax saturates and hides what a flip changes
    faces = np.random.default_rng(0).random((16, 48, 48), np.float32)
    pooled = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.GlobalAveragePooling2D(),
                               keras.layers.Dense(7, activation="softmax")])  # fmt: skip
    flat = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(7, activation="softmax")])  # fmt: skip
    flip_only = TTA(shifts=((0, 0),))
    same = predict(pooled, faces, tta=flip_only)
    np.testing.assert_allclose(same, predict(pooled, faces), atol=1e-5)
    assert np.abs(predict(flat, faces, tta=flip_only) - predict(flat, faces)).max() > 1e-3


def test_member_runs_are_the_profiles_classifiers_only(three_members):
    labels, members = three_members
    splits = {"PublicTest": (labels, members["a"])}
    save_member("a", splits)
    save_member("a-tta-affine", splits, "tta", tta="affine", trained_by="a")
    save_member("ensemble-cpu", splits, "ensemble", details={"members": {"a": 1.0}})
    save_member("student-cpu", splits, details={"config": {"soft_targets": "teacher"}})
    save_member("ferplus", splits, details={"config": {"soft_targets": "ferplus"}})
    write_run("probe", "pretrained", "SimCLR + linear probe", "test", "cpu", "sha", 1.0, splits,
              {"pretrain_config": {"epochs": 1}})  # fmt: skip
    write_run("small", "trained", "toy", "test", "quick", "sha", 1.0, splits)
    assert ens.member_runs("cpu") == ["a", "a-tta-affine", "ferplus"]


def test_runs_evaluated_on_other_faces_are_left_out_and_counted(three_members, caplog):
    labels, members = three_members
    save_member("here", {"PublicTest": (labels, members["a"])})
    save_member("elsewhere", {"PublicTest": (labels[::-1], members["b"])})  # another subset
    assert ens.member_runs("cpu") == ["elsewhere", "here"]
    assert ens.member_runs("cpu", np.array(labels)) == ["here"]
    assert "1 cpu runs were evaluated on other faces" in caplog.text and "elsewhere" in caplog.text


def test_missing_member_models_are_named_in_one_clear_error(tmp_path, monkeypatch):
    from fer_utils.errors import ModelError

    monkeypatch.setenv("FER_MODELS", str(tmp_path))
    splits = {"PublicTest": (np.arange(7), np.eye(7))}
    save_member("a", splits)
    save_member("a-tta", splits, "tta", tta="shifts", trained_by="a")  # a's model, once
    save_member("b", splits)
    files = f"a ({tmp_path / 'a.keras'}), b ({tmp_path / 'b.keras'})"
    missing = re.escape(f"2 of the members' models are missing: {files}.") + ".* with `test`"
    with pytest.raises(ModelError, match=missing):
        ens.load_member_models(["a", "a-tta", "b"])


def test_members_without_model_files_cannot_teach(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_MODELS", str(tmp_path))
    splits = {"PublicTest": (np.arange(7), np.eye(7))}
    save_member("a", splits)
    save_member("b", splits)
    assert ens.with_models(["a", "b"]) == []  # a fresh clone: predictions, no models
    (tmp_path / "a.keras").write_bytes(b"model")
    assert ens.with_models(["a", "b"]) == ["a"]


def test_accuracy_by_size_shows_the_vote_gaining_over_its_first_member():
    """Three members right on independent 60 % of the faces: their vote is right where two
    are (about 65 %), a gain over the first pick alone that the paired interval separates
    from 0; the first pick against itself gains exactly nothing."""
    rng = np.random.default_rng(0)
    splits = []
    for split in ("PublicTest", "PrivateTest"):
        labels = rng.integers(0, 7, 3000)
        right = rng.random((3, 3000)) < 0.6
        guesses = np.where(right, labels, (labels + rng.integers(1, 7, (3, 3000))) % 7)
        members = np.eye(7)[guesses] * 0.9 + 0.1 / 7
        splits.append(ens.SplitPredictions(split, labels, ("a", "b", "c"), members))
    table = ens.accuracy_by_size(("a", "b", "c"), *splits)
    assert list(table.split) == ["PublicTest"] * 3 + ["PrivateTest"] * 3
    assert (table.low <= table.accuracy).all() and (table.accuracy <= table.high).all()
    first, vote = table[table.members == 1], table[table.members == 3]
    assert (first.gain == 0).all() and (first.gain_low == 0).all()
    assert (vote.gain_low > 0.01).all() and (vote.accuracy > first.accuracy.to_numpy()).all()
    beyond = ens.beyond_best_size(("a", "b", "c"), table, *splits)
    assert (beyond.k == 3).all() and (beyond.gain == 0).all()  # all three are the best size
    assert (beyond.verdict == "within noise").all()
    four = ("a", "b", "c", "a")  # a 4th vote re-counts "a"
    beyond = ens.beyond_best_size(four, ens.accuracy_by_size(four, *splits), *splits)
    assert (beyond.k == 3).all() and (beyond.gain < 0).all()
    with pytest.raises(ValueError, match="table of these 4 members"):
        ens.beyond_best_size(four, table, *splits)
    with pytest.raises(ValueError, match="chosen on PublicTest only"):
        ens.accuracy_by_size(("a",), splits[1], splits[0])
    with pytest.raises(ValueError, match="chosen on PublicTest only"):
        ens.beyond_best_size(("a",), table, splits[1], splits[0])
