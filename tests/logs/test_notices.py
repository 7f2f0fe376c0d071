"""Notices said once and counted: short lines, counts for meta.json."""

from cockpit.logs._notices import MAX_LINE, Notices, name_some


def test_long_path_lists_name_a_few_and_count_the_rest():
    paths = [
        f"grad_norm.per_layer.encoder.layers.{i}.self_attn.weight" for i in range(75)
    ]
    text = name_some(paths, 150)
    assert len(text) <= 150
    assert text.startswith(paths[0])
    assert text.endswith(" more")
    named = text.split(" and ")[0].count(", ") + 1
    assert text.endswith(f" and {75 - named} more")


def test_one_very_long_path_is_cut():
    assert len(name_some(["x" * 500], 100)) <= 100


def test_nonfinite_values_are_said_once_per_quantity_then_counted():
    notices = Notices()
    for step in range(3):
        notices.nonfinite(step, ["loss", "grad_norm.total"])
    notices.nonfinite(3, ["alpha"])
    assert notices.drain() == [
        "step 0: non-finite values logged as null: loss, grad_norm.total",
        "step 3: non-finite values logged as null: alpha",
    ]
    assert notices.summary() == [
        "4 more non-finite values in 2 steps, see meta.json (nonfinite_counts)"
    ]
    assert notices.meta()["nonfinite_counts"]["loss"] == {
        "values": 3,
        "steps": 3,
        "first_step": 0,
    }


def test_repeated_record_notices_are_said_at_their_first_step():
    notices = Notices()
    for step in range(4):
        notices.once(f"step {step}: alpha: zero noise variance")
    notices.once("x" * 1000)
    assert notices.drain() == ["step 0: alpha: zero noise variance", "x" * 197 + "..."]
    assert len(notices.drain()) == 0
    assert notices.meta() == {"repeated_notices": {"alpha: zero noise variance": 3}}
    assert all(len(line) <= MAX_LINE for line in notices.summary())
