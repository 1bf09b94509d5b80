"""HTML pages: every Japanese encoding, declared or detected; the main text only, in blocks under their headings; tables."""

from __future__ import annotations

import pytest

from ingest.document import Place, Section
from ingest.errors import EncodingError, ResourceLimitError
from ingest.limits import Limits
from ingest.web import read_html
from testkit.web import make_html

LIMITS = Limits()
RULES = """
<h1>社内規程</h1>
<p>この規程は全社員に適用します。</p>
<h2>第2章 申請</h2>
<h3>2.1 手続き</h3>
<p>申請書は総務課に提出してください。</p>
<h3>2.2 期限</h3>
<p>期限は月末です。</p>
<h2>第3章 雑則</h2>
<p>この規程は令和6年4月1日から施行する。</p>
"""
NAV = """
<header><nav><ul><li><a href="/">ホームへ戻る</a></li><li>サイトマップ</li></ul></nav></header>
<script>document.write("スクリプトの文字");</script>
<style>p::before { content: "スタイルの文字"; }</style>
"""
FOOTER = "<footer><p>Copyright 株式会社見本 著作権表示</p></footer>"
CHROME = ("ホームへ戻る", "サイトマップ", "スクリプトの文字", "スタイルの文字", "著作権表示")


def texts(data: bytes, name: str = "規程.html") -> list[str]:
    return [section.text for section in read_html(name, data, LIMITS).sections]


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (make_html(RULES, encoding="cp932", label="Shift_JIS"), "cp932"),
        (make_html(RULES, encoding="cp932", label="Windows-31J"), "cp932"),
        (make_html(RULES, encoding="euc_jp", label="EUC-JP", declare="http-equiv"), "euc_jp"),
        (make_html(RULES, encoding="iso-2022-jp", declare="http-equiv"), "iso-2022-jp"),
        (make_html(RULES, encoding="cp932", label="Shift_JIS", declare="xml"), "cp932"),
        (make_html(RULES, encoding="cp932", declare="none"), "cp932"),
        (make_html(RULES, encoding="euc_jp", declare="none"), "euc_jp"),
        (make_html(RULES, encoding="utf-8", declare="none", bom=True), "utf-8-sig"),
        (make_html(RULES, encoding="utf-16", declare="none"), "utf-16"),
        # the BOM outweighs a declaration that contradicts it
        (make_html(RULES, encoding="utf-8", label="Shift_JIS", bom=True), "utf-8-sig"),
        (make_html(RULES, encoding="utf-8"), "utf-8"),
    ],
)
def test_encodings_are_declared_or_detected(data: bytes, encoding: str) -> None:
    reading = read_html("規程.html", data, LIMITS)
    assert reading.encoding == encoding
    assert Section("申請書は総務課に提出してください。", Place(heading=("社内規程", "第2章 申請", "2.1 手続き"))) in (
        reading.sections
    )
    assert reading.notes == ()


def test_shift_jis_is_read_as_windows_cp932_with_its_extra_characters() -> None:
    # pages labelled Shift_JIS are written by Windows, with NEC's circled numbers and ㈱
    data = make_html("<p>①㈱見本～Ⅲ</p>", encoding="cp932", label="Shift_JIS")
    assert texts(data) == ["①㈱見本～Ⅲ"]


def test_a_wrong_declaration_falls_back_to_detection_with_a_note() -> None:
    reading = read_html("規程.html", make_html(RULES, encoding="cp932", label="utf-8"), LIMITS)
    assert reading.encoding == "cp932"
    assert "この規程は令和6年4月1日から施行する。" in [section.text for section in reading.sections]
    assert len(reading.notes) == 1
    assert "規程.html" in reading.notes[0]
    assert "utf-8" in reading.notes[0]


@pytest.mark.parametrize("label", ["iso-8859-1", "windows-1252"])
def test_japanese_declared_as_western_is_read_as_japanese(label: str) -> None:
    # old templates declare iso-8859-1 on every page; EUC-JP bytes would decode as Latin-1 mojibake
    reading = read_html("規程.html", make_html(RULES, encoding="euc_jp", label=label), LIMITS)
    assert reading.encoding == "euc_jp"
    assert "期限は月末です。" in [section.text for section in reading.sections]
    assert label in reading.notes[0]


def test_western_text_declared_as_such_stays_western() -> None:
    data = make_html("<p>Café crème, 20 €</p>", encoding="cp1252", label="windows-1252")
    reading = read_html("menu.html", data, LIMITS)
    assert (reading.encoding, [section.text for section in reading.sections]) == ("windows-1252", ["Café crème, 20 €"])


def test_an_unknown_declared_charset_falls_back_to_detection() -> None:
    reading = read_html("規程.html", make_html(RULES, encoding="euc_jp", label="x-unknown-charset"), LIMITS)
    assert reading.encoding == "euc_jp"
    assert "期限は月末です。" in [section.text for section in reading.sections]


def test_an_undetectable_page_is_an_encoding_error_naming_the_file() -> None:
    with pytest.raises(EncodingError, match=r"壊れた\.html"):
        read_html("壊れた.html", b"<p>" + bytes(range(128, 256)) * 4 + b"</p>", LIMITS)


def test_sections_follow_the_heading_path() -> None:
    sections = read_html("規程.html", make_html(RULES, title="社内規程 | 株式会社見本"), LIMITS).sections
    assert sections == (
        Section("社内規程", Place(heading=("社内規程",))),
        Section("この規程は全社員に適用します。", Place(heading=("社内規程",))),
        Section("第2章 申請", Place(heading=("社内規程", "第2章 申請"))),
        Section("2.1 手続き", Place(heading=("社内規程", "第2章 申請", "2.1 手続き"))),
        Section("申請書は総務課に提出してください。", Place(heading=("社内規程", "第2章 申請", "2.1 手続き"))),
        Section("2.2 期限", Place(heading=("社内規程", "第2章 申請", "2.2 期限"))),
        Section("期限は月末です。", Place(heading=("社内規程", "第2章 申請", "2.2 期限"))),
        Section("第3章 雑則", Place(heading=("社内規程", "第3章 雑則"))),
        Section("この規程は令和6年4月1日から施行する。", Place(heading=("社内規程", "第3章 雑則"))),
    )


def test_the_title_stands_in_for_a_missing_h1() -> None:
    body = "<p>はじめに。</p><h2>概要</h2><p>本文です。</p>"
    sections = read_html("a.html", make_html(body, title="  お知らせ\n一覧 "), LIMITS).sections
    assert sections == (
        Section("はじめに。", Place(heading=("お知らせ一覧",))),
        Section("概要", Place(heading=("お知らせ一覧", "概要"))),
        Section("本文です。", Place(heading=("お知らせ一覧", "概要"))),
    )


def test_navigation_scripts_styles_and_footers_are_dropped() -> None:
    found = "\n".join(texts(make_html(NAV + RULES + FOOTER, head=NAV)))
    for chrome in CHROME:
        assert chrome not in found
    assert "申請書は総務課に提出してください。" in found


@pytest.mark.parametrize(
    "hidden",
    [
        "<aside>関連記事の一覧</aside>",
        '<div role="navigation">関連記事の一覧</div>',
        '<div role="banner">関連記事の一覧</div>',
        '<div aria-hidden="true">関連記事の一覧</div>',
        "<div hidden>関連記事の一覧</div>",
        '<p style="display: none">関連記事の一覧</p>',
        "<noscript>関連記事の一覧</noscript>",
        "<template><p>関連記事の一覧</p></template>",
        '<form action="/search"><input name="q"><button>関連記事の一覧</button></form>',
        "<select><option>関連記事の一覧</option></select>",
        '<iframe src="x">関連記事の一覧</iframe>',
        "<svg><text>関連記事の一覧</text></svg>",
        "<!-- 関連記事の一覧 -->",
    ],
)
def test_chrome_and_hidden_text_are_dropped(hidden: str) -> None:
    assert texts(make_html(f"<p>前の文。</p>{hidden}<p>後の文。</p>")) == ["前の文。", "後の文。"]


def test_only_the_main_content_is_read_when_marked() -> None:
    body = "<div>サイト名</div><main><h1>お知らせ</h1><p>本文です。</p></main><div>広告</div><main>二つ目</main>"
    assert texts(make_html(body)) == ["お知らせ", "本文です。"]
    body = '<div>サイト名</div><div role="main"><p>本文です。</p></div><div>広告</div>'
    assert texts(make_html(body)) == ["本文です。"]


def test_every_article_is_read_with_its_own_header() -> None:
    body = (
        "<div>サイト名</div>"
        "<article><header><h2>記事一</h2></header><p>一つ目の本文。</p><footer>投稿者 山田</footer></article>"
        "<div>広告</div>"
        "<article><h2>記事二</h2><p>二つ目の本文。</p><article><p>入れ子の本文。</p></article></article>"
    )
    assert texts(make_html(body)) == [
        "記事一",
        "一つ目の本文。",
        "投稿者 山田",
        "記事二",
        "二つ目の本文。",
        "入れ子の本文。",
    ]


def test_a_form_wrapping_the_whole_page_is_kept() -> None:
    # ASP.NET Web Forms put the whole body in one <form>
    body = '<form id="form1"><h1>お知らせ</h1><p>本文です。</p><input type="submit" value="送信"></form>'
    assert texts(make_html(body)) == ["お知らせ", "本文です。"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # inline elements join without spaces; a line break in the source between Japanese vanishes
        (
            "<p>申請書は<b>総務課</b>に<a href='#'>提出</a>\n  してください。</p>",
            ["申請書は総務課に提出してください。"],
        ),
        ("<p>Hello,\n   <em>world</em>  again</p>", ["Hello, world again"]),
        ("<p>一行目<br>二行目<br/><br>三行目</p>", ["一行目\n二行目\n三行目"]),
        ("<p>\u3000字下げと全角　空白</p>", ["\u3000字下げと全角　空白"]),
        ("<pre>  def f():\n      return 1\n</pre>", ["  def f():\n      return 1"]),
        ("<div>前の文<p>段落</p>後の文</div>", ["前の文", "段落", "後の文"]),
        ("<ul><li>項目一<ul><li>入れ子</li></ul></li><li>項目二</li></ul>", ["項目一", "入れ子", "項目二"]),
        ("<dl><dt>用語</dt><dd>説明です。</dd></dl>", ["用語", "説明です。"]),
        ("<blockquote>引用です。</blockquote>", ["引用です。"]),
        ("<p><ruby>漢字<rp>(</rp><rt>かんじ</rt><rp>)</rp></ruby>を読む</p>", ["漢字を読む"]),
        ("<p>A&amp;B &lt;株&gt; &#x3042;&nbsp;い</p>", ["A&B <株> あ\xa0い"]),
        ("<p>改行は\r\n本文\rでも</p>", ["改行は本文でも"]),
        ("<p>英字の前後は\nCRLF\nでも空白</p>", ["英字の前後は CRLF でも空白"]),
        ("<p>  </p><p></p><div><span> </span></div>", []),
    ],
)
def test_blocks_and_whitespace(body: str, expected: list[str]) -> None:
    assert texts(make_html(body)) == expected


def test_a_table_with_a_header_row_becomes_one_section_per_row() -> None:
    body = """
    <h2>名簿</h2>
    <table>
      <caption>社員一覧</caption>
      <thead><tr><th>氏名</th><th>部署</th><th>内線</th></tr></thead>
      <tbody>
        <tr><td>山田 太郎</td><td>総務部</td><td>101</td></tr>
        <tr><td>佐藤 花子</td><td></td><td>102</td></tr>
        <tr><td colspan="2">（欠員）</td><td>103</td></tr>
      </tbody>
    </table>
    """
    assert read_html("名簿.html", make_html(body), LIMITS).sections[1:] == (
        Section("社員一覧", Place(heading=("名簿",))),
        Section("氏名: 山田 太郎\n部署: 総務部\n内線: 101", Place(heading=("名簿",))),
        Section("氏名: 佐藤 花子\n内線: 102", Place(heading=("名簿",))),
        Section("氏名・部署: （欠員）\n内線: 103", Place(heading=("名簿",))),
    )


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        # a header of <th> cells without <thead>; a row longer than the header
        (
            "<tr><th>品名</th><th>価格</th></tr><tr><td>りんご</td><td>100円</td><td>特価</td></tr>",
            ["品名: りんご\n価格: 100円\n列3: 特価"],
        ),
        # two header rows: a cell is named by both
        (
            "<thead><tr><th rowspan='2'>氏名</th><th colspan='2'>期間</th></tr><tr><th>開始</th><th>終了</th></tr></thead>"
            "<tr><td>山田</td><td>4月</td><td>9月</td></tr>",
            ["氏名: 山田\n期間・開始: 4月\n期間・終了: 9月"],
        ),
        # a rowspan cell is written on every row it spans, and the cells after it keep their columns
        (
            "<tr><th>部署</th><th>氏名</th><th>内線</th></tr>"
            "<tr><td rowspan='2'>総務部</td><td>山田</td><td>101</td></tr><tr><td>佐藤</td><td>102</td></tr>",
            ["部署: 総務部\n氏名: 山田\n内線: 101", "部署: 総務部\n氏名: 佐藤\n内線: 102"],
        ),
        # no header: cells joined by " | "
        ("<tr><td>一</td><td>二</td><td></td><td>三</td></tr><tr><td>四</td></tr>", ["一 | 二 | 三", "四"]),
        # a row naming itself in a <th>
        (
            "<tr><th>所在地</th><td>東京都千代田区</td></tr><tr><th>電話</th><td>03-1234-5678</td></tr>",
            ["所在地: 東京都千代田区", "電話: 03-1234-5678"],
        ),
        # a header and nothing else
        ("<tr><th>氏名</th><th>部署</th></tr>", ["氏名 | 部署"]),
        # a cell's own line breaks stay; a table inside a cell is that cell's text
        (
            "<tr><th>住所</th></tr><tr><td>東京都<br>千代田区<table><tr><td>内</td><td>側</td></tr></table></td></tr>",
            ["住所: 東京都\n千代田区\n内\n側"],
        ),
        # nonsense spans are read as 1
        ("<tr><th colspan='x'>甲</th><th colspan='-3'>乙</th></tr><tr><td>1</td><td>2</td></tr>", ["甲: 1\n乙: 2"]),
    ],
)
def test_tables(table: str, expected: list[str]) -> None:
    assert texts(make_html(f"<table>{table}</table>")) == expected


def test_a_layout_table_is_read_as_the_page_it_lays_out() -> None:
    body = (
        "<table><tr><td><ul><li>メニュー</li></ul></td>"
        "<td><h1>会社概要</h1><p>当社は1950年に創業しました。</p></td></tr></table>"
    )
    sections = read_html("a.html", make_html(body), LIMITS).sections
    assert Section("当社は1950年に創業しました。", Place(heading=("会社概要",))) in sections


def test_a_page_without_text_has_no_sections() -> None:
    for data in (b"", b"   \n", b"<!-- only a comment -->", make_html("<script>x()</script>")):
        assert read_html("空.html", data, LIMITS).sections == ()


def test_deep_nesting_is_no_crash() -> None:
    data = make_html("<div>" * 100_000 + "深い" + "</div>" * 100_000)
    read_html("深い.html", data, LIMITS)  # libxml2 stops nesting at 256 levels; no RecursionError here


def test_the_character_limit_is_kept() -> None:
    limits = Limits(max_chars=1_000)
    with pytest.raises(ResourceLimitError, match=r"大きい\.html.*RAG_MAX_CHARS"):
        read_html("大きい.html", make_html("<p>" + "あ" * 2_000 + "</p>"), limits)
    # a few bytes of rowspan cannot expand into more text than the limit
    limits = Limits(max_chars=10_000)
    rows = "<tr><td rowspan='0'>値</td></tr>" * 300  # 9,000 characters, 45,000 cells once expanded
    with pytest.raises(ResourceLimitError, match="表を展開して"):
        read_html("表.html", make_html(f"<table>{rows}</table>"), limits)
