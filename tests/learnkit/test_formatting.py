"""The one place numbers become report text: hand-computed cases of each formatter."""

import math

from learnkit.core.formatting import md_table, pct, pp, share


def test_share_is_an_unsigned_percentage_of_a_whole():
    assert share(0.977) == "97.7%"
    assert share(0.0) == "0.0%"
    assert share(1.0) == "100.0%"


def test_pct_is_a_signed_relative_change_and_says_na_when_undefined():
    assert pct(0.0123) == "+1.2%"
    assert pct(-0.446) == "-44.6%"
    assert pct(None) == "n/a" and pct(math.nan) == "n/a"


def test_pp_is_a_signed_difference_in_points():
    assert pp(0.0123) == "+1.23"
    assert pp(-0.0168, "pp") == "-1.68pp"
    assert pp(None) == "n/a"


def test_md_table_escapes_pipes_and_rounds_floats_to_four_significant_digits():
    assert (
        md_table(["a", "b"], [[1, "x|y"], [0.123456, None]])
        == "| a | b |\n|---|---|\n| 1 | x\\|y |\n| 0.1235 | None |\n"
    )
