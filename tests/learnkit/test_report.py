"""report.html: nothing from the data runs in the reader's browser, and the file stands alone."""

from learnkit.core.frameworks import pyplot

plt = pyplot()

from learnkit.core.formatting import md_table  # noqa: E402
from learnkit.pipeline.report import render_html, write_run_report  # noqa: E402

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_hostile_item_text_is_shown_as_text(tmp_path):
    section = "## Neighbours\n\n" + md_table(["item", "title"], [["i1", HOSTILE], ["i2", "[win](javascript:alert(1))"]])
    write_run_report(tmp_path, "run", [section], {"ok": 1})
    page = (tmp_path / "report.html").read_text()
    assert "<script" not in page and "<img" not in page  # neither tag exists: both are text
    assert "&lt;script&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<a" not in page and "href" not in page  # the link is its characters, not a link
    assert "[win](javascript:alert(1))" in page


LINKS = [
    "[free money](https://evil.example)",
    "![tracker](https://evil.example/p.png)",
    "<https://evil.example>",
    "[ref][x]",
    "**loud** _quiet_ `code`",
]


def test_markdown_in_data_text_reaches_the_page_as_the_same_characters(tmp_path):
    """The probe's case: an item title written as a Markdown link became a live link in report.html. Every
    place a title reaches the report goes through md_text (tables do it for every cell)."""
    import numpy as np
    import pandas as pd

    from learn_embed.i2i_report import i2i_report, neighbour_listing

    items = pd.DataFrame(
        {"title": LINKS, "genres": ["[a](https://evil.example)"] * 5}, index=[f"i{k}" for k in range(5)]
    )
    ids = list(items.index)
    listing = neighbour_listing(items, ids, [0, 1], np.array([[1, 2], [3, 4]]), np.ones((2, 2)))
    section = i2i_report(listing, items, {"llm": 0.5}, "genre_at_2", "genres", 2, "llm", 5)
    write_run_report(tmp_path, "run", [section], {"ok": 1})
    page = (tmp_path / "report.html").read_text()
    assert "<a" not in page and "<img" not in page and "<strong>loud" not in page and "<em>quiet" not in page
    for text in ("[free money](https://evil.example)", "![tracker](https://evil.example/p.png)", "[ref][x]"):
        assert text in page
    assert "&lt;https://evil.example&gt;" in page and "**loud** _quiet_ `code`" in page


def test_images_inside_the_run_are_embedded_and_others_left_out(tmp_path):
    (tmp_path / "pch").mkdir()
    plt.plot([0, 1])
    plt.savefig(tmp_path / "pch" / "curves.png")
    plt.close()
    (tmp_path.parent / "outside.png").write_bytes((tmp_path / "pch" / "curves.png").read_bytes())
    page = render_html("![curves](pch/curves.png)\n\n![escape](../outside.png)\n", tmp_path)
    assert page.count('src="data:image/png;base64,iVBOR') == 1
    assert "[image not embedded: escape]" in page and "outside.png" not in page
