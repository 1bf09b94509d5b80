"""Keyword search: the Japanese analyser on literal text, BM25 against bm25s, persistence and rebuild from Chroma."""

from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np
import pytest

from ingest.normalize import normalize_text
from pipelines.model.embedder import Embedder
from pipelines.search.retrieval import Searcher
from pipelines.store.chroma import ChromaStore
from pipelines.store.indexing import Indexer
from pipelines.store.keyword import KeywordIndex, SudachiAnalyzer


@pytest.fixture(scope="module")
def analyzer() -> SudachiAnalyzer:
    return SudachiAnalyzer()


@pytest.mark.parametrize(
    ("text", "present", "absent"),
    [
        # conjugated verbs become their dictionary form; particles and auxiliary verbs are left out
        ("東京都に住んでいた", ["東京都", "住む", "居る"], ["に", "で", "た"]),
        ("彼は走りました。", ["彼", "走る"], ["は", "まし", "ます", "た", "。"]),
        ("ご飯を食べなかった", ["御飯", "食べる"], ["を", "なかっ", "ない", "た"]),  # ご飯 → 御飯: one spelling
        # katakana words whole, spelling variants to one form
        ("コンピューターを使う", ["コンピューター", "使う"], ["を"]),
        ("コンピュータを使う", ["コンピューター", "使う"], []),
        # full-width alphanumerics in their half-width, lower-case form
        ("ＡＢＣ社のＰＤＦ", ["abc", "社", "pdf"], ["ＡＢＣ", "ABC", "の"]),
        # numbers with units: the number and the unit are both words
        ("１２３ｋｍ先まで", ["123", "km", "先"], ["まで"]),
        ("2024年4月1日に施行", ["2024", "年", "4", "月", "1", "日", "施行"], ["に"]),
        ("標高は3776メートルです", ["標高", "3776", "メートル"], ["は", "です"]),
        # symbols and brackets are not words
        ("「有給休暇」【重要】！？", ["有給", "休暇", "重要"], ["「", "」", "【", "】", "！", "？"]),
    ],
)
def test_analyzer_words(analyzer: SudachiAnalyzer, text: str, present: list[str], absent: list[str]) -> None:
    words = analyzer.words(text)
    for word in present:
        assert word in words, (text, words)
    for word in absent:
        assert word not in words, (text, words)


def test_analyzer_agrees_across_widths_after_normalisation(analyzer: SudachiAnalyzer) -> None:
    """The product normalises (NFKC) before analysing: half-width katakana and full-width digits meet their twins."""
    assert analyzer.words(normalize_text("ｺﾝﾋﾟｭｰﾀｰで１２３件")) == analyzer.words("コンピューターで123件")


def test_analyzer_handles_empty_and_long_text(analyzer: SudachiAnalyzer) -> None:
    assert analyzer.words("") == []
    assert analyzer.words("。、！？「」") == []
    long = "富士山は日本で最も高い山です。" * 5000  # 75,000 characters: past Sudachi's input limit
    assert analyzer.words(long).count("富士山") == 5000


CORPUS = [
    "富士山は日本で最も高い山で、標高は3776メートルです。",
    "東京は日本の首都であり、政治と経済の中心地です。",
    "京都には古い寺や神社が多く、毎年たくさんの観光客が訪れます。",
    "社内規程によると、有給休暇は入社6か月後から取得できます。有給休暇の日数は勤続年数で増えます。",
    "雨が降ったので、試合は翌週に延期されました。",
    "日本の山では富士山がいちばん有名です。",
]


def _index(analyzer: SudachiAnalyzer, texts: list[str] = CORPUS) -> KeywordIndex:
    index = KeywordIndex(analyzer)
    index.add_document("doc.txt", "v1", [(f"c{i}", t) for i, t in enumerate(texts)])
    return index


@pytest.mark.parametrize("question", ["富士山の標高は？", "有給休暇はいつから取れますか", "日本の首都と経済", "山"])
def test_bm25_scores_match_bm25s(analyzer: SudachiAnalyzer, question: str) -> None:
    """Our incremental BM25 gives the scores of bm25s's Lucene variant on the same words."""
    index = _index(analyzer)
    found = index.search(question, 10)
    reference = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
    reference.index([analyzer.words(t) for t in CORPUS], show_progress=False)
    words = [w for w in index.query_words(question) if w in reference.vocab_dict]
    expected = reference.get_scores(words)
    ours = np.array([found.score(f"c{i}") for i in range(len(CORPUS))])
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    assert [h.chunk_id for h in found.hits] == [
        f"c{i}" for i in np.argsort(-expected, kind="stable") if expected[i] > 0
    ]


def test_search_ranks_limits_and_filters(analyzer: SudachiAnalyzer) -> None:
    index = _index(analyzer)
    index.add_document("other.txt", "v1", [("o0", "富士山に登るには夏がよい。")])
    hits = index.search("富士山", 10).hits
    assert {h.chunk_id for h in hits} == {"c0", "c5", "o0"}
    assert [h.rank for h in hits] == [1, 2, 3]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(index.search("富士山", 2).hits) == 2
    assert [h.chunk_id for h in index.search("富士山", 10, sources=["other.txt"]).hits] == ["o0"]
    assert index.search("富士山", 10, sources=[]).hits == []
    assert index.search("宇宙船", 10).hits == []  # no shared word: nothing, not everything at 0
    assert index.search("はをにが。", 10).hits == []  # only particles and symbols


def test_replacing_and_removing_a_document(analyzer: SudachiAnalyzer) -> None:
    index = _index(analyzer)
    index.add_document("doc.txt", "v2", [("n0", "新しい規程では、在宅勤務が週三日まで認められます。")])
    assert index.search("富士山", 10).hits == []
    assert [h.chunk_id for h in index.search("在宅勤務", 10).hits] == ["n0"]
    assert index.versions == {"doc.txt": "v2"}
    index.remove_document("doc.txt")
    assert index.search("在宅勤務", 10).hits == []
    assert len(index) == 0


# Against the real store: persistence, rebuild, consistency -------------------------------------


def _ingest(indexer: Indexer, name: str, text: str) -> None:
    report = indexer.ingest_text(name, text)
    assert report.status in ("added", "replaced"), report


def _keyword_indexer(embedder: Embedder, store: ChromaStore, path: Path | None) -> tuple[Indexer, KeywordIndex]:
    keyword = KeywordIndex(SudachiAnalyzer(), path)
    return Indexer(embedder, store, chunk_tokens=48, chunk_overlap=8, keyword=keyword), keyword


def _all_hits(index: KeywordIndex, question: str) -> list[tuple[str, float]]:
    return [(h.chunk_id, round(h.score, 5)) for h in index.search(question, 100).hits]


def test_index_is_saved_and_reloaded_without_reading_chroma(
    embedder: Embedder, store: ChromaStore, tmp_path: Path
) -> None:
    path = tmp_path / "keyword" / "documents.npz"
    indexer, keyword = _keyword_indexer(embedder, store, path)
    _ingest(indexer, "富士山.txt", "富士山は日本で最も高い山です。標高は3776メートルです。")
    _ingest(indexer, "規程.txt", "有給休暇は入社6か月後から取得できます。")
    assert path.exists()
    reloaded = KeywordIndex(SudachiAnalyzer(), path)
    assert reloaded.versions == store.reader.live_versions()
    assert reloaded.sync(store.reader) is False  # already current: nothing read from Chroma
    assert _all_hits(reloaded, "富士山の標高") == _all_hits(keyword, "富士山の標高") != []


@pytest.mark.parametrize("damage", ["deleted", "garbage", "other analyser"])
def test_missing_or_unreadable_index_is_rebuilt_from_chroma(
    embedder: Embedder, store: ChromaStore, tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "keyword.npz"
    indexer, keyword = _keyword_indexer(embedder, store, path)
    _ingest(indexer, "富士山.txt", "富士山は日本で最も高い山です。標高は3776メートルです。")
    _ingest(indexer, "京都.txt", "京都には古い寺や神社が多く、観光客が訪れます。")
    before = _all_hits(keyword, "京都の神社")
    if damage == "deleted":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"\x00not an index")
    else:
        analyser = SudachiAnalyzer()
        analyser.name = "another-analyser"
        KeywordIndex(analyser, path).sync(store.reader)  # a file made by a different analyser
    rebuilt = KeywordIndex(SudachiAnalyzer(), path)
    assert rebuilt.sync(store.reader) is True
    assert rebuilt.versions == store.reader.live_versions()
    assert _all_hits(rebuilt, "京都の神社") == before
    assert KeywordIndex(SudachiAnalyzer(), path).sync(store.reader) is False  # and the rebuilt file was saved


def test_stale_index_catches_up_with_replace_and_delete(embedder: Embedder, store: ChromaStore, tmp_path: Path) -> None:
    """An index file from before another process replaced and deleted documents is brought up to date."""
    path = tmp_path / "keyword.npz"
    indexer, _ = _keyword_indexer(embedder, store, path)
    _ingest(indexer, "規程.txt", "有給休暇は入社6か月後から取得できます。")
    _ingest(indexer, "京都.txt", "京都には古い寺や神社が多く、観光客が訪れます。")
    old = path.read_bytes()
    # another writer, with no keyword index of its own, changes the store
    plain = Indexer(embedder, store, chunk_tokens=48, chunk_overlap=8)
    _ingest(plain, "規程.txt", "在宅勤務は週三日まで認められます。")
    plain.delete("京都.txt")
    _ingest(plain, "富士山.txt", "富士山は日本で最も高い山です。")
    path.write_bytes(old)

    stale = KeywordIndex(SudachiAnalyzer(), path)
    assert stale.versions != store.reader.live_versions()
    assert stale.sync(store.reader) is True
    assert stale.versions == store.reader.live_versions()
    assert stale.search("有給休暇", 10).hits == []  # the replaced version's words are gone
    assert stale.search("京都の神社", 10).hits == []  # the deleted document too
    assert [h.chunk_id for h in stale.search("在宅勤務", 10).hits] == [
        chunk_id for chunk_id, _ in store.reader.chunk_texts("規程.txt", store.reader.live_versions()["規程.txt"])
    ]
    assert len(stale.search("富士山", 10).hits) == 1


def test_indexer_keeps_the_index_in_step(embedder: Embedder, store: ChromaStore, tmp_path: Path) -> None:
    indexer, keyword = _keyword_indexer(embedder, store, tmp_path / "keyword.npz")
    _ingest(indexer, "規程.txt", "有給休暇は入社6か月後から取得できます。")
    _ingest(indexer, "規程.txt", "在宅勤務は週三日まで認められます。")
    assert keyword.versions == store.reader.live_versions()
    assert keyword.search("有給休暇", 10).hits == []
    ids = {h.chunk_id for h in keyword.search("在宅勤務", 10).hits}
    assert ids
    assert ids <= {chunk_id for chunk_id, _ in store.reader.chunk_texts("規程.txt", keyword.versions["規程.txt"])}
    indexer.delete("規程.txt")
    assert keyword.versions == {} == store.reader.live_versions()
    assert keyword.search("在宅勤務", 10).hits == []


@pytest.mark.slow
def test_searcher_follows_another_writer(embedder: Embedder, store: ChromaStore, tmp_path: Path) -> None:
    """A searcher with a saved keyword index notices commits and deletes made by a writer that has none."""
    indexer, keyword = _keyword_indexer(embedder, store, tmp_path / "keyword.npz")
    searcher = Searcher(embedder, store, keyword)
    _ingest(indexer, "規程.txt", "有給休暇は入社6か月後から取得できます。")
    assert [h.chunk.source for h in searcher.search("有給休暇", mode="keyword")] == ["規程.txt"]
    before = store.reader.changes()
    other = Indexer(embedder, store, chunk_tokens=48, chunk_overlap=8)
    _ingest(other, "規程.txt", "在宅勤務は週三日まで認められます。")
    _ingest(other, "富士山.txt", "富士山は日本で最も高い山です。")
    assert store.reader.changes() != before
    assert searcher.search("有給休暇", mode="keyword") == []
    assert [h.chunk.source for h in searcher.search("在宅勤務", mode="keyword")] == ["規程.txt"]
    other.delete("富士山.txt")
    assert searcher.search("富士山", mode="keyword") == []
    assert all(h.chunk.source == "規程.txt" for h in searcher.search("富士山", k=5, mode="hybrid"))


def test_writes_in_a_batch_save_the_index_once_and_a_killed_batch_is_caught_up(
    embedder: Embedder, store: ChromaStore, tmp_path: Path
) -> None:
    """``Indexer.batched`` (a sync): one save at the end; before it, the saved file lags Chroma and a reader catches up."""
    path = tmp_path / "keyword.npz"
    indexer, keyword = _keyword_indexer(embedder, store, path)
    _ingest(indexer, "富士山.txt", "富士山は日本で最も高い山です。標高は3776メートルです。")
    saved = path.stat().st_mtime_ns
    with indexer.batched():
        _ingest(indexer, "京都.txt", "京都には古い寺や神社が多く、観光客が訪れます。")
        _ingest(indexer, "規程.txt", "有給休暇は入社6か月後から取得できます。")
        indexer.delete("富士山.txt")
        assert path.stat().st_mtime_ns == saved  # nothing saved yet
        # as a process killed here leaves it: the saved file holds only 富士山, a new reader catches up
        behind = KeywordIndex(SudachiAnalyzer(), path)
        assert set(behind.versions) == {"富士山.txt"}
        assert behind.sync(store.reader) is True
        assert behind.versions == store.reader.live_versions()
        assert _all_hits(behind, "京都の神社") == _all_hits(keyword, "京都の神社") != []
    assert KeywordIndex(SudachiAnalyzer(), path).versions == store.reader.live_versions()
    assert set(store.reader.live_versions()) == {"京都.txt", "規程.txt"}


# The saved base and the delta ----------------------------------------------------------------

MORE = [
    "在宅勤務は週三日まで認められます。申請は前日までに行います。",
    "富士山の山頂には郵便局があり、夏の間だけ開いています。",
    "経費の精算は月末締めで、領収書の原本が必要です。",
    "京都の紅葉は十一月下旬が見頃で、寺の庭園が特に美しい。",
]


def _fill(index: KeywordIndex) -> None:
    """Documents added, replaced and removed, with base merges between them when ``merge_rows`` is small."""
    for i, text in enumerate(CORPUS):
        index.add_document(f"doc{i}.txt", "v1", [(f"d{i}-0", text), (f"d{i}-1", MORE[i % len(MORE)])])
        index.search("富士山", 3)  # a search folds a due delta into a base
        index.save()
    index.add_document("doc1.txt", "v2", [("d1-new", "東京の本社では在宅勤務が週二日までです。")])
    index.remove_document("doc3.txt")
    index.add_document("extra.txt", "v1", [("x0", "富士山と京都の写真を社内報に載せます。")])


def _scores(index: KeywordIndex, question: str) -> dict[str, float]:
    found = index.search(question, 100)
    return {h.chunk_id: round(h.score, 5) for h in found.hits}


def _rebuilt(analyzer: SudachiAnalyzer, index: KeywordIndex) -> KeywordIndex:
    """A fresh index holding only ``index``'s live documents, as a sync from the store would build it."""
    fresh = KeywordIndex(analyzer)
    texts = {f"d{i}-0": t for i, t in enumerate(CORPUS)} | {f"d{i}-1": MORE[i % len(MORE)] for i in range(len(CORPUS))}
    texts |= {"d1-new": "東京の本社では在宅勤務が週二日までです。", "x0": "富士山と京都の写真を社内報に載せます。"}
    texts |= {"l0": "富士山の麓で会議を開きます。"}
    for source in index.versions:
        ids = {"doc1.txt": ["d1-new"], "extra.txt": ["x0"], "late.txt": ["l0"]}.get(source)
        number = source.removeprefix("doc").removesuffix(".txt")
        ids = ids or [f"d{number}-0", f"d{number}-1"]
        fresh.add_document(source, index.versions[source], [(i, texts[i]) for i in ids])
    return fresh


QUESTIONS = ["富士山の標高は？", "在宅勤務は何日まで", "京都の寺", "有給休暇", "経費精算の領収書"]


@pytest.mark.parametrize("merge_rows", [1, 3, 100])
def test_base_and_delta_score_as_a_rebuilt_index(analyzer: SudachiAnalyzer, tmp_path: Path, merge_rows: int) -> None:
    """Merged bases, masked documents and a delta give the scores of an index built from the live documents alone."""
    index = KeywordIndex(analyzer, tmp_path / "keyword.npz", merge_rows=merge_rows)
    _fill(index)
    rebuilt = _rebuilt(analyzer, index)
    assert index.versions == rebuilt.versions
    assert len(index) == len(rebuilt)
    for question in QUESTIONS:
        assert _scores(index, question) == _scores(rebuilt, question), question
        found, expected = index.search(question, 100), rebuilt.search(question, 100)
        for chunk_id in ["d0-0", "d1-new", "x0", "d3-0", "nothing"]:
            assert found.score(chunk_id) == pytest.approx(expected.score(chunk_id), abs=1e-6)
    assert index.search("有給休暇", 10, sources=["doc3.txt"]).hits == []  # removed from the base: masked
    assert [h.chunk_id for h in index.search("富士山", 10, sources=["extra.txt"]).hits] == ["x0"]


def test_base_is_saved_mapped_and_reloaded(analyzer: SudachiAnalyzer, tmp_path: Path) -> None:
    path = tmp_path / "keyword.npz"
    index = KeywordIndex(analyzer, path, merge_rows=3)
    _fill(index)
    index.save()
    bases = sorted(tmp_path.glob("keyword.npz.*.base"))
    assert 1 <= len(bases) <= 2  # the newest and the one before it; older ones removed
    reloaded = KeywordIndex(analyzer, path, merge_rows=3)
    assert reloaded._base is not None
    assert not reloaded._base.arrays["rows"].flags.owndata  # mapped from the file, not read into memory
    assert reloaded.versions == index.versions
    for question in QUESTIONS:
        assert _scores(reloaded, question) == _scores(index, question)
    # a change in one process is seen by another that reads the file again, without a new base
    index.remove_document("doc0.txt")
    index.add_document("new.txt", "v1", [("n0", "富士山の新しい登山道が開通しました。")])
    index.save()
    assert reloaded._file_changed()
    reloaded._load()
    assert reloaded.versions == index.versions
    assert _scores(reloaded, "富士山の登山道") == _scores(index, "富士山の登山道")


def test_a_save_killed_midway_leaves_the_previous_index(
    analyzer: SudachiAnalyzer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keyword.npz"
    index = KeywordIndex(analyzer, path, merge_rows=1)
    _fill(index)
    index.save()
    before = _scores(KeywordIndex(analyzer, path), "富士山")
    index.add_document("late.txt", "v1", [("l0", "富士山の麓で会議を開きます。")])

    def killed(*_: object) -> None:
        raise KeyboardInterrupt  # as a kill after the new base was written, before the file naming it

    monkeypatch.setattr("pipelines.store.keyword.os.replace", killed)
    with pytest.raises(KeyboardInterrupt):
        index.save()
    monkeypatch.undo()
    assert list(tmp_path.glob("*.partial"))  # the unfinished file is left beside the index
    survivor = KeywordIndex(analyzer, path)
    assert "late.txt" not in survivor.versions
    assert _scores(survivor, "富士山") == before
    index.save()  # the next save goes through
    assert "late.txt" in KeywordIndex(analyzer, path).versions


def test_a_file_naming_a_missing_base_reads_as_empty(analyzer: SudachiAnalyzer, tmp_path: Path) -> None:
    """A base folder gone (removed by hand, a full disk): the index is empty and ``sync`` refills it from the store."""
    path = tmp_path / "keyword.npz"
    index = KeywordIndex(analyzer, path, merge_rows=1)
    _fill(index)
    index.save()
    for folder in tmp_path.glob("keyword.npz.*.base"):
        for array in folder.iterdir():
            array.unlink()
        folder.rmdir()
    assert KeywordIndex(analyzer, path).versions == {}


def test_an_index_saved_in_the_old_single_file_form_is_read(analyzer: SudachiAnalyzer, tmp_path: Path) -> None:
    """Format 1 (every chunk's word ids in one file) is read as a delta; the next save writes the base form."""
    import json

    index = _index(analyzer)
    words = [analyzer.words(t) for t in CORPUS]
    vocab = list(dict.fromkeys(w for row in words for w in row))
    state = {
        "format": 1,
        "analyzer": analyzer.name,
        "vocab": vocab,
        "row_ids": [f"c{i}" for i in range(len(CORPUS))],
        "documents": {"doc.txt": ["v1", 0, len(CORPUS)]},
    }
    path = tmp_path / "keyword.npz"
    with path.open("wb") as handle:
        np.savez(
            handle,
            state=np.frombuffer(json.dumps(state, ensure_ascii=False).encode("utf-8"), dtype=np.uint8),
            lengths=np.array([len(r) for r in words], dtype=np.int64),
            words=np.array([vocab.index(w) for row in words for w in row], dtype=np.int32),
        )
    old = KeywordIndex(analyzer, path, merge_rows=1)
    assert old.versions == {"doc.txt": "v1"}
    assert _scores(old, "富士山の標高") == _scores(index, "富士山の標高")
    old.save()
    assert list(tmp_path.glob("keyword.npz.*.base"))
    assert _scores(KeywordIndex(analyzer, path), "富士山の標高") == _scores(index, "富士山の標高")


def test_changes_after_a_merge_are_kept_when_saved(analyzer: SudachiAnalyzer, tmp_path: Path) -> None:
    path = tmp_path / "keyword.npz"
    index = KeywordIndex(analyzer, path, merge_rows=2)
    _fill(index)  # the last changes: a delta of two rows, one base document masked
    index.search("富士山", 3)
    index.add_document("late.txt", "v1", [("l0", "富士山の麓で会議を開きます。")])
    index.remove_document("doc0.txt")
    index.save()
    reloaded = KeywordIndex(analyzer, path)
    assert reloaded.versions == index.versions
    assert "late.txt" in reloaded.versions
    assert "doc0.txt" not in reloaded.versions
    assert _scores(reloaded, "富士山の麓") == _scores(index, "富士山の麓")


def test_remove_files_takes_the_base_folders_with_the_file(analyzer: SudachiAnalyzer, tmp_path: Path) -> None:
    """A deleted collection leaves no keyword file and no base folder (``Collections.delete``)."""
    from pipelines.store.keyword import remove_files

    path = tmp_path / "keyword.npz"
    index = KeywordIndex(analyzer, path, merge_rows=1)
    _fill(index)
    index.save()
    other = tmp_path / "other.npz"
    KeywordIndex(analyzer, other, merge_rows=1).save()
    assert list(tmp_path.glob("keyword.npz.*.base"))
    remove_files(path)
    assert not path.exists()
    assert not list(tmp_path.glob("keyword.npz.*"))
    assert other.exists()  # another collection's index is left alone


def test_a_change_made_while_a_merge_runs_outside_the_lock_is_kept(
    analyzer: SudachiAnalyzer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save merges without holding the index (searches go on); a document added meanwhile is not lost."""
    from pipelines.store import keyword

    path = tmp_path / "keyword.npz"
    index = KeywordIndex(analyzer, path, merge_rows=2)
    _fill(index)
    merged = keyword._merged

    def slow_merge(state: keyword._Snapshot) -> keyword._Base:
        found = index.search("富士山", 10)  # a search does not wait for the merge
        assert found.hits
        if "late.txt" not in index.versions:
            index.add_document("late.txt", "v1", [("l0", "富士山の麓で会議を開きます。")])
        return merged(state)

    monkeypatch.setattr(keyword, "_merged", slow_merge)
    index.save()
    reloaded = KeywordIndex(analyzer, path)
    assert "late.txt" in reloaded.versions
    assert reloaded.versions == index.versions
    assert _scores(reloaded, "富士山の麓") == _scores(_rebuilt(analyzer, index), "富士山の麓")
