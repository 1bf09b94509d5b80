"""Test Office files made on the spot with python-docx, openpyxl and python-pptx, with known Japanese content.

Each builder returns a file's bytes; its docstring lists what ``ingest.office`` reads from it.
"""

from __future__ import annotations

import datetime
import io

# Namespaces of a Word text box, as Word writes one: a DrawingML shape for current readers, and the
# same text again in a VML shape (mc:Fallback) for old ones.
_TEXT_BOX = """\
<w:r xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"
     xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"
     xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing"
     xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"
     xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape"
     xmlns:v="urn:schemas-microsoft-com:vml">
  <mc:AlternateContent>
    <mc:Choice Requires="wps">
      <w:drawing>
        <wp:inline>
          <wp:extent cx="1828800" cy="457200"/>
          <wp:docPr id="100" name="テキスト ボックス 1"/>
          <a:graphic>
            <a:graphicData uri="http://schemas.microsoft.com/office/word/2010/wordprocessingShape">
              <wps:wsp>
                <wps:txbx><w:txbxContent><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:txbxContent></wps:txbx>
                <wps:bodyPr/>
              </wps:wsp>
            </a:graphicData>
          </a:graphic>
        </wp:inline>
      </w:drawing>
    </mc:Choice>
    <mc:Fallback>
      <w:pict><v:shape><v:textbox><w:txbxContent><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:txbxContent></v:textbox></v:shape></w:pict>
    </mc:Fallback>
  </mc:AlternateContent>
</w:r>"""

_FOOTNOTES = """\
<w:footnotes xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">
  <w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:footnote>
  <w:footnote w:type="continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/></w:r></w:p></w:footnote>
  <w:footnote w:id="1"><w:p><w:r><w:footnoteRef/></w:r><w:r><w:t xml:space="preserve"> {text}</w:t></w:r></w:p></w:footnote>
</w:footnotes>"""

_W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def make_docx() -> bytes:
    """A Word document with headings, a table, a text box, page headers and footers, and a footnote.

    ``read_docx`` reads, with the heading path of each:

    - 経費の手引き (表題), 第2章 申請 (見出し 1), 2.1 手続き (見出し 2)
    - 申請書は総務課に提出してください。 (with a footnote mark)
    - the table 項目 | 金額: 「項目: 交通費 / 金額: 1,200円」, 「項目: 宿泊費 / 金額: 8,000円」, and a row
      merged across both columns, 「項目: 領収書を添付すること」
    - 次の点に注意してください。, then its text box 押印は不要です。 (once, though stored twice)
    - 2.2 期限 (見出し 2), 毎月末日までに提出してください。
    - in a second section: 第3章 審査 (outline level 1, in the Normal style), 3.1 審査の流れ (a style
      named 見出し 2), 審査には一週間かかります。
    - 電子申請も受け付けます。 (the footnote) under 脚注, 社外秘 (the header of both sections, once) under
      ヘッダー, 株式会社サンプル 総務部 (the footer, once; its
      page number 「- 1 -」 is left out) under フッター
    """
    import docx
    from docx.enum.style import WD_STYLE_TYPE
    from docx.opc.constants import CONTENT_TYPE, RELATIONSHIP_TYPE
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part
    from docx.oxml import parse_xml

    document = docx.Document()
    first = document.sections[0]
    first.header.paragraphs[0].text = "社外秘"
    first.footer.paragraphs[0].text = "株式会社サンプル 総務部"
    first.footer.add_paragraph("- 1 -")
    document.add_heading("経費の手引き", level=0)
    document.add_heading("第2章 申請", level=1)
    document.add_heading("2.1 手続き", level=2)
    paragraph = document.add_paragraph("申請書は総務課に提出してください。")
    # python-docx has no API for footnotes or text boxes: their XML is added as Word writes it
    paragraph._p.append(parse_xml(f'<w:r {_W}><w:footnoteReference w:id="1"/></w:r>'))
    document.add_paragraph("")
    table = document.add_table(rows=4, cols=2)
    for row, cells in enumerate([("項目", "金額"), ("交通費", "1,200円"), ("宿泊費", "8,000円")]):
        for column, text in enumerate(cells):
            table.cell(row, column).text = text
    merged = table.cell(3, 0).merge(table.cell(3, 1))
    merged.text = "領収書を添付すること"
    paragraph = document.add_paragraph("次の点に注意してください。")
    paragraph._p.append(parse_xml(_TEXT_BOX.format(text="押印は不要です。")))
    document.add_heading("2.2 期限", level=2)
    document.add_paragraph("毎月末日までに提出してください。")
    second = document.add_section()
    second.header.is_linked_to_previous = False
    second.header.paragraphs[0].text = "社外秘"
    chapter = document.add_paragraph("第3章 審査")
    chapter._p.get_or_add_pPr().append(parse_xml(f'<w:outlineLvl {_W} w:val="0"/>'))
    document.styles.add_style("見出し 2", WD_STYLE_TYPE.PARAGRAPH)
    document.add_paragraph("3.1 審査の流れ", style="見出し 2")
    document.add_paragraph("審査には一週間かかります。")
    footnotes = Part(
        PackURI("/word/footnotes.xml"),
        CONTENT_TYPE.WML_FOOTNOTES,
        _FOOTNOTES.format(text="電子申請も受け付けます。").encode(),
        document.part.package,
    )
    document.part.relate_to(footnotes, RELATIONSHIP_TYPE.FOOTNOTES)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_xlsx() -> bytes:
    """An Excel workbook with a table sheet 「売上」 and a form on squared paper (方眼紙) 「申請書」.

    ``read_xlsx`` reads 売上 as a table (header 日付 / 商品 / 金額 / 確認 in row 1; row 4 is empty;
    row 6 holds 合計 and a formula with no cached value, as openpyxl calculates nothing):

    - row 2: 日付: 2024-04-01 / 商品: りんご / 金額: 120 / 確認: TRUE
    - row 3: 日付: 2024-04-02 09:30 / 商品: みかん / 金額: 80 / 確認: FALSE
    - row 5: 日付: 2024-04-03 / 商品: ぶどう / 金額: 350.5 / 確認: TRUE
    - row 6: 日付: 合計

    and 申請書 as a grid (20 narrow columns, the text in merged cells): row 1 「経費申請書」, row 3
    「氏名 山田太郎」, row 4 「所属 総務部」, row 6 「申請日 2024-04-05」, row 8 「備考 特になし」 (its
    value merged over rows 8–9).
    """
    import openpyxl
    from openpyxl.utils import get_column_letter

    book = openpyxl.Workbook()
    sales = book.active
    assert sales is not None
    sales.title = "売上"
    sales.append(["日付", "商品", "金額", "確認"])
    sales.append([datetime.date(2024, 4, 1), "りんご", 120, True])
    sales.append([datetime.datetime(2024, 4, 2, 9, 30), "みかん", 80.0, False])
    sales.append([])
    sales.append([datetime.date(2024, 4, 3), "ぶどう", 350.5, True])
    sales.append(["合計", None, "=SUM(C2:C5)"])
    form = book.create_sheet("申請書")
    for column in range(1, 21):
        form.column_dimensions[get_column_letter(column)].width = 2.5
    for row, label, value in [
        (3, "氏名", "山田太郎"),
        (4, "所属", "総務部"),
        (6, "申請日", datetime.date(2024, 4, 5)),
        (8, "備考", "特になし"),
    ]:
        form.cell(row, 1, label)
        form.merge_cells(start_row=row, start_column=1, end_row=row, end_column=5)
        form.cell(row, 6, value)
        form.merge_cells(start_row=row, start_column=6, end_row=row + (row == 8), end_column=20)
    form.cell(1, 1, "経費申請書")
    form.merge_cells("A1:T1")
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def make_pptx() -> bytes:
    """A PowerPoint presentation of two slides.

    ``read_pptx`` reads, one section each:

    - slide 1: 四半期報告 (title), 2024年度 第1四半期 (subtitle)
    - slide 2: 売上の概要 (title); then by position: 東日本が好調 (a text box), the table 地域 | 売上 as
      「地域: 東日本 / 売上: 1,200」 and 「地域: 西日本 / 売上: 900」, 前年比で増加しました。 (a text box
      added before the others but placed below them), 注: 速報値 (a text box in a group); last the
      notes, 「ノート: 口頭で補足する」
    """
    import pptx
    from pptx.util import Inches

    presentation = pptx.Presentation()
    cover = presentation.slides.add_slide(presentation.slide_layouts[0])
    assert cover.shapes.title is not None
    cover.shapes.title.text = "四半期報告"
    cover.placeholders[1].text = "2024年度 第1四半期"
    slide = presentation.slides.add_slide(presentation.slide_layouts[5])
    assert slide.shapes.title is not None
    slide.shapes.title.text = "売上の概要"
    slide.shapes.add_textbox(Inches(1), Inches(5), Inches(6), Inches(0.5)).text_frame.text = "前年比で増加しました。"
    slide.shapes.add_textbox(Inches(1), Inches(1.6), Inches(6), Inches(0.5)).text_frame.text = "東日本が好調"
    table = slide.shapes.add_table(3, 2, Inches(1), Inches(2.4), Inches(6), Inches(1.5)).table
    for row, cells in enumerate([("地域", "売上"), ("東日本", "1,200"), ("西日本", "900")]):
        for column, text in enumerate(cells):
            table.cell(row, column).text = text
    group = slide.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(6), Inches(3), Inches(0.5)).text_frame.text = "注: 速報値"
    notes = slide.notes_slide.notes_text_frame
    assert notes is not None
    notes.text = "口頭で補足する"
    buffer = io.BytesIO()
    presentation.save(buffer)
    return buffer.getvalue()


def make_trip_docx() -> bytes:
    """A short Word document with one fact: 出張の日当は一日三千円です。 under 第2章 出張 > 2.1 旅費.

    Its page header 社外秘 is read once; 帰着後一週間以内に報告書を出します。 sits under 2.2 報告.
    """
    import docx

    document = docx.Document()
    document.sections[0].header.paragraphs[0].text = "社外秘"
    document.add_heading("第2章 出張", level=1)
    document.add_heading("2.1 旅費", level=2)
    document.add_paragraph("出張の日当は一日三千円です。")
    document.add_heading("2.2 報告", level=2)
    document.add_paragraph("帰着後一週間以内に報告書を出します。")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_produce_xlsx() -> bytes:
    """A one-sheet workbook, sheet 青果: 品目 | 産地 | 単価 and three rows (りんご, ドリアン, みかん)."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "青果"
    sheet.append(["品目", "産地", "単価"])
    sheet.append(["りんご", "青森", 120])
    sheet.append(["ドリアン", "タイ", 3000])
    sheet.append(["みかん", "愛媛", 80])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def make_branch_pptx() -> bytes:
    """Two slides: a cover 支店報告, then 新潟支店 with one fact, 新潟支店の売上は前年比一割増でした。"""
    import pptx

    presentation = pptx.Presentation()
    cover = presentation.slides.add_slide(presentation.slide_layouts[0])
    assert cover.shapes.title is not None
    cover.shapes.title.text = "支店報告"
    slide = presentation.slides.add_slide(presentation.slide_layouts[1])
    assert slide.shapes.title is not None
    slide.shapes.title.text = "新潟支店"
    slide.placeholders[1].text = "新潟支店の売上は前年比一割増でした。"
    buffer = io.BytesIO()
    presentation.save(buffer)
    return buffer.getvalue()
