"""The reading probe: field-by-field comparison of an answer with the teacher's trace."""

import numpy as np

from reczero_jax.data.data_config import DataConfig, SyntheticConfig
from reczero_jax.data.loader import load_data
from reczero_jax.data.teacher import teacher_trace
from reczero_jax.tools.reading_probe import FIELDS, compare, fields, main, summarize

TEACHER = (
    "<analyze user> action pos drama neg comedy new horror ok ; cares about price ; "
    "average 3.93 </analyze user>\n"
    "<analyze item> drama neg comedy new quality ok price pos ; average 3.17 </analyze item>\n"
    "<match> the item is a mixed fit this user ; midpoint of the averages 4 ; "
    "by the aspects 3 </match>\n"
    "<rate> 4 </rate>"
)


def test_fields_of_a_teacher_trace():
    f = fields(TEACHER)
    assert f["user_average"] == "3.93" and f["item_average"] == "3.17"
    assert f["item_genre_1"] == "drama neg" and f["item_genre_2"] == "comedy new"
    assert f["item_quality"] == "quality ok" and f["item_price"] == "price pos"
    assert f["user_price"] == "cares about price" and f["verdict"] == "is a mixed fit"
    assert (f["midpoint"], f["leaning"], f["rating"]) == ("4", "3", "4")
    assert f["user_stances"] == "action pos drama neg comedy new horror ok"


def test_compare_marks_exactly_the_wrong_fields():
    assert all(compare(TEACHER, TEACHER).values())
    wrong = TEACHER.replace("comedy new quality", "horror new quality").replace("3.17", "3.27")
    right = compare(wrong, TEACHER)
    assert {k for k, v in right.items() if not v} == {
        "item_genre_2",
        "item_aspects",
        "item_average",
    }
    assert not any(compare("<rate> 4 </rate>", TEACHER)[k] for k in FIELDS if k != "rating")
    s = summarize([TEACHER, wrong], [TEACHER, TEACHER])
    assert s["item_genre_2"] == 0.5 and s["verdict"] == 1.0


def test_summary_counts_ratings_that_follow_the_answer_s_own_analysis():
    by_leaning = TEACHER.replace("<rate> 4 </rate>", "<rate> 3 </rate>")
    s = summarize([TEACHER, by_leaning, "<rate> 3 </rate>"], [TEACHER] * 3)
    assert s["rating_is_own_midpoint"] == 1 / 3
    assert s["rating_is_own_leaning"] == 1 / 3


def test_leaning_maes_rate_by_the_own_and_the_teacher_s_leaning():
    wrong_leaning = TEACHER.replace("by the aspects 3", "by the aspects 5")
    no_leaning = TEACHER.replace("by the aspects 3", "")
    answers = [TEACHER, wrong_leaning, no_leaning, "<rate> 2 </rate>"]
    targets = np.array([3.0, 4.0, 1.0, 5.0])
    s = summarize(answers, [TEACHER] * 4, targets)
    # own leanings: 3, 5, then the midpoint 4, then 3 (nothing written)
    assert s["own_leaning_mae"] == np.mean([0, 1, 3, 2])
    assert s["teacher_leaning_mae"] == np.mean([0, 1, 2, 2])
    assert "own_leaning_mae" not in summarize(answers, [TEACHER] * 4)


def test_every_field_is_found_in_real_teacher_traces():
    data = load_data(
        DataConfig(synthetic=SyntheticConfig(num_users=60, num_items=30)), splits=("test",)
    )
    rng = np.random.default_rng(0)
    for e in data.examples["test"][:20]:
        assert all(v is not None for v in fields(teacher_trace(e, data.world, rng, 0.0)).values())


def test_missing_checkpoints_exit_2(tmp_path, capsys):
    assert main(["--workdir", str(tmp_path)]) == 2
    assert "no sft checkpoints" in capsys.readouterr().err
    (tmp_path / "checkpoints" / "sft").mkdir(parents=True)
    assert main(["--workdir", str(tmp_path)]) == 2  # a run directory without config.json
    assert "config.json does not exist" in capsys.readouterr().err


def test_linear_rule_reads_the_features_the_teacher_writes():
    """The linear rule's features, rebuilt from the teacher's noise-free traces (averages
    and the item's pos / neg marks as written), give the same MAE."""
    from reczero_jax.tools.reading_probe import linear_rule_mae

    data = load_data(DataConfig(synthetic=SyntheticConfig(num_users=80, num_items=30)))
    train, test = data.examples["train"], data.examples["test"]
    targets = np.asarray([e.rating for e in test], np.float64)
    got = linear_rule_mae(train, test, data.world, targets)

    rng = np.random.default_rng(0)

    def row(e):
        f = fields(teacher_trace(e, data.world, rng, 0.0))
        marks = f["item_aspects"].split()[1::2]
        pos_minus_neg = marks.count("pos") - marks.count("neg")
        return [1.0, float(f["user_average"]), float(f["item_average"]), pos_minus_neg]

    x, xt = np.array([row(e) for e in train]), np.array([row(e) for e in test])
    coef = np.linalg.solve(x.T @ x, x.T @ np.array([e.rating for e in train]))
    want = np.mean(np.abs(np.clip(np.floor(xt @ coef + 0.5), 1, 5) - targets))
    assert abs(got - want) < 0.02  # the trace prints the averages to 2 decimals
