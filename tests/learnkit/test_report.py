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
    assert "javascript:" not in page and ">win</a>" in page


def test_images_inside_the_run_are_embedded_and_others_left_out(tmp_path):
    (tmp_path / "pch").mkdir()
    plt.plot([0, 1])
    plt.savefig(tmp_path / "pch" / "curves.png")
    plt.close()
    (tmp_path.parent / "outside.png").write_bytes((tmp_path / "pch" / "curves.png").read_bytes())
    page = render_html("![curves](pch/curves.png)\n\n![escape](../outside.png)\n", tmp_path)
    assert page.count('src="data:image/png;base64,iVBOR') == 1
    assert "[image not embedded: escape]" in page and "outside.png" not in page
