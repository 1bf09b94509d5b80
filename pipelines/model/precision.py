"""The precision policy: what an in-process embedder computes passages and questions in, and why.

float32 is the reference. A faster path is used only where, on fixed Japanese texts, it reproduces
float32 (every cosine ≥ 0.995, the same nearest neighbours, the same passages first for each question)
and where it is measured to be faster on this machine:

- passages on a CPU: int8 (ONNX Runtime, pipelines/model/int8.py), bfloat16 where the CPU computes it
  natively (AVX512-BF16 or AMX), or float32: of those that pass the guard, the fastest on a batch of
  passages timed here; on a GPU, float16 under the same guard;
- questions on a CPU: one short text at a time, where reading the weights, not computing, is the
  cost: int8 where it passes the guard against the passages' vectors, else as passages.

The verdict is a ``PrecisionChoice``, which every embedder exposes (a remote one says the server
decides), so that faces show it without knowing which embedder they have. Checking and timing take
seconds, so a verdict is kept on disk (``VerdictCache``, one per machine: the user's cache
directory) keyed by the model's files, this CPU's features and the libraries' versions, and later
starts, of any data directory or process, reuse it. A start that finds none serves in float32 at
once and prepares the faster paths in the background (``pipelines/model/preparation.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Protocol

import numpy as np

from pipelines.choices import PRECISIONS, QUERY_PRECISIONS, Precision, QueryPrecision

logger = logging.getLogger(__name__)

# Texts whose token ids are checked against sentencepiece when a LUKE model loads: full-width and
# half-width forms, a character outside the vocabulary, and strings that look like special tokens.
TOKENIZER_CHECK_TEXTS = (
    "東京は日本の首都です。",
    "ＡＢＣ全角とｶﾀｶﾅ半角、１２３と123。",
    "𠮷野家の牛丼を食べた！本当に？",
    "文中の[MASK]や<s>や</s>や<mask>や<ent>はただの文字です。",
    "改行\nと\tタブ",
)
# Texts on which a faster precision must reproduce float32 before it is used: varied lengths and forms.
CALIBRATION_TEXTS = (
    *TOKENIZER_CHECK_TEXTS,
    "有給休暇は、入社して六か月が経過した社員に十日付与します。申請は上長に行ってください。",
    "富士山は静岡県と山梨県にまたがる活火山で、標高は3776メートルと日本で最も高い。",
    "本規程は2024年4月1日から施行する。",
    "会議の資料はPDFで配布し、議事録はテキストファイルで保存してください。",
    "梅雨は、北海道と小笠原諸島を除く日本、朝鮮半島南部、中国の南部から長江流域にかけての沿海部、"
    "および台湾など、東アジアの広範囲においてみられる特有の気象現象で、5月から7月にかけて来る"
    "曇りや雨の多い期間のこと。雨季の一種である。",
    "GPUサーバーはA棟3階のサーバー室にあります。",
)
# Real Japanese passages, each with the question it answers: a fast path must put the same passages
# first for each question as float32 does; they are also the batch whose embedding is timed.
RANKING_PASSAGES = (
    "年次有給休暇は、雇入れの日から六か月間継続して勤務し、全労働日の八割以上出勤した社員に十日を付与する。"
    "その後は勤続年数に応じて付与日数を加算し、最大で二十日とする。",
    "出張旅費は、出張の前日までに申請書を提出し、所属長の承認を得たうえで、帰着後一週間以内に精算する。"
    "宿泊費は一泊一万二千円を上限とし、領収書を添付すること。",
    "富士山は静岡県と山梨県にまたがる標高3776メートルの活火山で、2013年に世界文化遺産に登録された。"
    "山頂付近の夏の平均気温は6度前後である。",
    "梅雨は、五月から七月にかけて日本列島の広い範囲で雨や曇りの日が続く季節現象で、北海道では明瞭でない。"
    "梅雨前線の停滞が長雨の原因となる。",
    "社内ネットワークへの接続には、情報システム部が発行するクライアント証明書が必要である。"
    "証明書の有効期限は一年で、期限の三十日前に更新の案内がメールで届く。",
    "光合成は、植物が光のエネルギーを使って二酸化炭素と水からでんぷんなどの有機物をつくり、酸素を放出する反応である。"
    "葉緑体の中で行われる。",
    "本契約の有効期間は締結日から一年間とし、期間満了の三か月前までにいずれからも書面による申出がないときは、"
    "同一条件でさらに一年間更新されるものとする。",
    "江戸幕府は1603年に徳川家康が征夷大将軍に任じられて開かれ、1867年の大政奉還まで約二百六十年続いた。"
    "鎖国政策のもとで長崎の出島が対外窓口となった。",
    "GPUサーバーはA棟三階のサーバー室に設置されており、利用には研究推進課への事前予約が必要である。"
    "一回の予約で使える時間は最長七十二時間である。",
    "健康診断は毎年十月に本社の会議室で実施する。受診できなかった社員は、指定の医療機関で十二月末までに受診し、"
    "結果を人事部に提出すること。",
    "ＰＤＦで配布された会議資料は共有フォルダの「会議資料」に保存し、議事録は会議の翌営業日までに"
    "テキストファイルで作成して同じフォルダに置く。",
    "カツオは黒潮に乗って春に北上し、秋に南下する回遊魚で、春に獲れるものは初ガツオ、秋のものは戻りガツオと呼ばれる。"
    "高知県ではたたきにして食べる。",
)
RANKING_QUESTIONS = (
    "有給休暇は入社してから何か月後にもらえますか？",
    "出張の宿泊費の上限はいくらですか",
    "富士山の標高は何メートル？",
    "梅雨の長雨の原因は何ですか。",
    "社内ネットワークに接続するには何が必要ですか",
    "光合成で植物が放出する気体は？",
    "契約はいつ自動的に更新されますか",
    "江戸幕府を開いたのは誰ですか",
    "ＧＰＵサーバーはどこにありますか？",
    "健康診断を受けられなかったらどうすればよいですか",
    "議事録はいつまでに作りますか",
    "初ガツオとは何ですか",
)
FAST_PATH_COSINE = 0.995
# Two passages whose float32 scores for a question are closer than this may swap on a fast path.
RANKING_MARGIN = 0.005
# A fast path must beat float32 by this much on the timed batch to be worth its rounding.
FAST_PATH_GAIN = 1.1
# The paths a CPU may take for passages, in the order they are considered; a GPU's are float16 and float32.
CPU_PATHS = ("int8", "bfloat16")
NAMES = {"int8": "int8（ONNX Runtime）", "bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}
# The precision of a model that runs elsewhere: the server's own, unknown here.
SERVER = "server"
# What a person reads for a precision where its machine value is no word of theirs; the others are shown as they are.
LABELS = {SERVER: "埋め込みサーバー"}
# after the label of a precision served while a faster one is prepared in the background
PREPARING_LABEL = "より速い精度を準備中"


def precision_label(precision: str, preparing: bool = False) -> str:
    """``precision`` (``PrecisionChoice.passages`` or ``.questions``) as the faces show it, in Japanese where it is a word."""
    label = LABELS.get(precision, precision)
    return f"{label}（{PREPARING_LABEL}）" if preparing else label


@dataclass(frozen=True)
class PrecisionChoice:
    """What passages and questions are computed in, each with the reason, in Japanese, for the faces.

    ``passages`` and ``questions`` are machine values (``int8``, ``float32``, ``server``…), kept as
    they are in JSON; ``passages_label`` and ``questions_label`` are what a person reads.
    ``preparing``: a faster precision is being checked in the background (a first start on this
    machine); this choice is what is served meanwhile, and is replaced when the check ends.
    """

    passages: str
    passages_reason: str
    questions: str
    questions_reason: str
    preparing: bool = False

    @property
    def passages_label(self) -> str:
        """What passages are computed in, as the faces show it (``precision_label``)."""
        return precision_label(self.passages, self.preparing)

    @property
    def questions_label(self) -> str:
        """What questions are computed in, as the faces show it (``precision_label``)."""
        return precision_label(self.questions, self.preparing)

    @classmethod
    def undecided(cls) -> PrecisionChoice:
        """Before the model is loaded."""
        return cls("float32", "まだ読み込んでいません", "float32", "まだ読み込んでいません")

    @classmethod
    def decided_by(cls, where: str) -> PrecisionChoice:
        """A model that runs elsewhere (an embeddings server): its precision is its own."""
        reason = f"{where}が決めます"
        return cls(SERVER, reason, SERVER, reason)


def cpu_features() -> tuple[str, ...]:
    """The instruction sets this CPU offers this process (as numpy detects them with CPUID), sorted."""
    from numpy._core._multiarray_umath import __cpu_features__

    return tuple(sorted(name for name, present in __cpu_features__.items() if present))


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16; every AMX CPU has it), where it pays off."""
    return "AVX512BF16" in cpu_features()


def compare_fast_path(reference: np.ndarray, fast: np.ndarray, documents: np.ndarray | None = None) -> tuple[bool, str]:
    """Whether unit vectors from a fast path match float32's: every cosine ≥ 0.995 and the same neighbours.

    ``reference`` and ``fast`` embed the same texts, row by row. The neighbours of each text (the
    other texts ordered by similarity) must come in the same order, up to near ties
    (``compare_ranking``): a faster model that ranks differently is a bug. For a path that embeds questions only, ``documents`` are the same texts
    as the passages are embedded: each fast question must rank them as the float32 question does.
    """
    cosines = (reference * fast).sum(axis=1)
    worst = float(cosines.min())
    if worst < FAST_PATH_COSINE:
        return False, f"float32 とのコサインが最小 {worst:.4f}（基準 {FAST_PATH_COSINE}）"
    against, fast_against = (reference, fast) if documents is None else (documents, documents)
    if not compare_ranking(reference, against, fast, fast_against)[0]:
        return False, "類似度の順位が float32 と変わる"
    return True, f"float32 とのコサイン最小 {worst:.4f}、順位も一致"


def compare_ranking(
    questions: np.ndarray, passages: np.ndarray, fast_questions: np.ndarray, fast_passages: np.ndarray
) -> tuple[bool, str]:
    """Whether fast vectors rank the passages for each question as float32's do, up to near ties.

    For each question, each of float32's first three passages must stay ahead of every passage that
    float32 puts more than ``RANKING_MARGIN`` below it: a swap of two passages whose float32 scores
    are that close is rounding, not a different ranking.
    """
    scores, fast_scores = questions @ passages.T, fast_questions @ fast_passages.T
    for row, fast_row in zip(scores, fast_scores, strict=True):
        for first in np.argsort(-row, kind="stable")[:3]:
            behind = row[first] - row > RANKING_MARGIN
            if np.any(fast_row[behind] >= fast_row[first]):
                return False, "質問に対する文章の順位が float32 と変わる"
    return True, "質問に対する文章の順位も一致"


class Paths(Protocol):
    """What the policy checks and times, given by the embedder."""

    def unavailable(self, precision: str) -> str | None:
        """Why ``precision`` cannot be computed here (Japanese), or None when it can."""
        ...

    def encode(self, texts: Sequence[str], precision: str) -> np.ndarray:
        """Unit vectors of ``texts`` computed in ``precision``."""
        ...

    def tokens_per_second(self, precision: str) -> float:
        """How fast ``precision`` embeds ``RANKING_PASSAGES`` as one batch, measured now."""
        ...


class PrecisionPolicy:
    """Chooses the precisions from what was asked (``RAG_PRECISION``, ``RAG_QUERY_PRECISION``) and the hardware."""

    def __init__(self, requested: Precision = "auto", requested_questions: QueryPrecision = "auto") -> None:
        if requested not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
        if requested_questions not in QUERY_PRECISIONS:
            raise ValueError(f"query_precision must be one of {QUERY_PRECISIONS}, got {requested_questions!r}")
        self.requested = requested
        self.requested_questions = requested_questions

    def choose(self, device: str, paths: Paths, exclude: Collection[str] = ()) -> PrecisionChoice:
        """The precisions for a model on ``device`` (``cpu``, ``cuda``, …), checked and timed through ``paths``.

        ``exclude``: paths not considered this time (a first start checks bfloat16, which needs no
        export, before it exports int8).
        """
        vectors: dict[str, np.ndarray] = {}

        def calibrated(precision: str) -> np.ndarray:
            """The calibration texts, ranking passages and questions in ``precision``, each computed once."""
            if precision not in vectors:
                texts = (*CALIBRATION_TEXTS, *RANKING_PASSAGES, *RANKING_QUESTIONS)
                vectors[precision] = paths.encode(texts, precision)
            return vectors[precision]

        passages, why = self._passages(device, paths, calibrated, exclude)
        questions, question_why = self._questions(device, passages, paths, calibrated, exclude)
        return PrecisionChoice(passages, why, questions, question_why)

    def _passages(
        self, device: str, paths: Paths, calibrated: Callable[[str], np.ndarray], exclude: Collection[str]
    ) -> tuple[str, str]:
        requested = self.requested
        if requested == "float32":
            return "float32", "RAG_PRECISION=float32"
        if requested != "auto":
            missing = paths.unavailable(requested)
            if missing is not None:
                return "float32", f"RAG_PRECISION={requested} は使えません（{missing}）"
            return requested, f"RAG_PRECISION={requested}（検査なし）"
        candidates = [p for p in (CPU_PATHS if device == "cpu" else ("float16",)) if p not in exclude]
        refused: list[str] = []
        passed: list[tuple[str, str]] = []
        for precision in candidates:
            missing = paths.unavailable(precision)
            if missing is not None:
                refused.append(f"{NAMES[precision]}: {missing}")
                continue
            ok, why = _check(calibrated("float32"), calibrated(precision))
            if ok:
                passed.append((precision, why))
            else:
                refused.append(f"{NAMES[precision]} は使いません: {why}")
        if not passed:
            return "float32", "。".join(refused) or f"{device} では float32 を使います"
        if device != "cpu":  # on a GPU, half precision is faster whenever it is right
            return passed[0]
        speeds = {precision: paths.tokens_per_second(precision) for precision in ("float32", *(p for p, _ in passed))}
        fastest = max(speeds, key=lambda p: speeds[p])
        figures = "、".join(f"{NAMES[p]} {speeds[p]:,.0f}" for p in sorted(speeds, key=lambda p: -speeds[p]))
        rates = f"速さ（トークン/秒）: {figures}"
        if fastest == "float32" or speeds[fastest] < FAST_PATH_GAIN * speeds["float32"]:
            return "float32", f"{rates}。速い計算がありません" + "".join(f"。{r}" for r in refused)
        return fastest, f"{dict(passed)[fastest]}。{rates}" + "".join(f"。{r}" for r in refused)

    def _questions(
        self,
        device: str,
        passages: str,
        paths: Paths,
        calibrated: Callable[[str], np.ndarray],
        exclude: Collection[str],
    ) -> tuple[str, str]:
        requested = self.requested_questions
        if requested == "auto" and self.requested == "float32":
            return passages, "RAG_PRECISION=float32 に合わせます"
        if requested != "auto":
            missing = paths.unavailable(requested)
            if missing is not None:
                return passages, f"RAG_QUERY_PRECISION={requested} は使えません（{missing}）。文書と同じ精度"
            return requested, f"RAG_QUERY_PRECISION={requested}（検査なし）"
        if device != "cpu":
            return passages, "文書と同じ精度（int8 は CPU だけ）"
        if passages == "int8":
            return "int8", "文書と同じ int8（ONNX Runtime）"
        if "int8" in exclude:
            return passages, "文書と同じ精度"
        missing = paths.unavailable("int8")
        if missing is not None:
            return passages, f"int8 は使えません（{missing}）。文書と同じ精度"
        ok, why = _check(calibrated("float32"), calibrated("int8"), calibrated(passages))
        if ok:
            return "int8", why
        return passages, f"int8 は使いません: {why}。文書と同じ精度"


def _check(reference: np.ndarray, fast: np.ndarray, passages: np.ndarray | None = None) -> tuple[bool, str]:
    """The guard on the calibration texts, then the ranking of the passages for the questions.

    ``reference`` and ``fast`` hold, row by row, ``CALIBRATION_TEXTS``, ``RANKING_PASSAGES`` and
    ``RANKING_QUESTIONS``. ``passages``: for a path that embeds questions only, the same rows in the
    passages' precision, against which its questions are ranked.
    """
    texts, ranked = len(CALIBRATION_TEXTS), len(CALIBRATION_TEXTS) + len(RANKING_PASSAGES)
    documents = None if passages is None else passages[:texts]
    ok, why = compare_fast_path(reference[:texts], fast[:texts], documents)
    if not ok:
        return False, why
    fast_passages = fast[texts:ranked] if passages is None else passages[texts:ranked]
    cosine = float((reference * fast).sum(axis=1).min())
    ok, ranking = compare_ranking(reference[ranked:], reference[texts:ranked], fast[ranked:], fast_passages)
    if not ok:
        return False, ranking
    return True, f"float32 とのコサイン最小 {cosine:.4f}、順位も一致"


LIBRARIES = ("torch", "transformers", "sentence-transformers", "onnxruntime", "onnx", "numpy")


def library_versions() -> dict[str, str]:
    """The versions of the libraries that compute the vectors (read without importing them)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return versions


def model_files(directory: Path) -> list[tuple[str, int, int]]:
    """Each file of a model directory (links followed) as (relative name, size, modification time)."""
    found = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and ".cache" not in path.relative_to(directory).parts:
            status = path.stat()
            found.append((str(path.relative_to(directory)), status.st_size, status.st_mtime_ns))
    return found


def digest(*parts: object) -> str:
    """A short stable hash of JSON-able parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:20]


class VerdictCache:
    """Precision verdicts and int8 exports on disk, under ``directory`` (one per machine by default:
    ``Settings.verdict_dir``, the user's cache directory).

    ``model_dir(files)`` is the folder of one model's files with these libraries: its int8 export and
    one verdict per CPU and request. A model whose files change gets a new folder; old ones stay
    until deleted by hand (they are listed in the README). Several processes may share it: each file
    is written beside its name and renamed, and ``preparing`` lets one of them prepare at a time.
    A directory that cannot be written is no error: the verdict is then kept for this process only.
    """

    LOCK_FILE = "prepare.lock"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def model_dir(self, model_name: str, files: Sequence[tuple[str, int, int]]) -> Path:
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name.strip("/").split("/")[-1])[:40]
        return self.directory / f"{slug}-{digest(model_name, list(files), library_versions())}"

    @staticmethod
    def _verdict_path(folder: Path, device: str, requested: tuple[str, str], threads: int) -> Path:
        return folder / f"verdict-{digest(device, cpu_features(), requested, threads)}.json"

    def read(self, folder: Path, device: str, requested: tuple[str, str], threads: int) -> PrecisionChoice | None:
        """The verdict kept for this CPU, device, request and threads, or None."""
        kept = self._record(folder, device, requested, threads)
        try:
            return PrecisionChoice(**kept["choice"]) if kept else None
        except (TypeError, KeyError):
            return None

    def pending(self, folder: Path, device: str, requested: tuple[str, str], threads: int) -> tuple[str, ...]:
        """The precisions the kept verdict has not considered yet (a first start's check left bfloat16 for later)."""
        kept = self._record(folder, device, requested, threads)
        found = kept.get("pending", []) if kept else []
        return tuple(str(p) for p in found) if isinstance(found, list) else ()

    def _record(self, folder: Path, device: str, requested: tuple[str, str], threads: int) -> dict | None:
        try:
            kept = json.loads(self._verdict_path(folder, device, requested, threads).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return kept if isinstance(kept, dict) else None

    def write(
        self,
        folder: Path,
        device: str,
        requested: tuple[str, str],
        threads: int,
        choice: PrecisionChoice,
        pending: Sequence[str] = (),
    ) -> bool:
        """Keep ``choice``; written beside its name and renamed, so that a reader never sees half a file.

        ``pending``: precisions not considered yet, to be checked by a later start (``pending``).
        False, with a log line, where the folder cannot be written (the verdict then lasts this process).
        """
        path = self._verdict_path(folder, device, requested, threads)
        record = {
            "choice": asdict(choice),
            "pending": list(pending),
            "cpu": cpu_features(),
            "device": device,
            "libraries": library_versions(),
        }
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
            os.replace(partial, path)
        except OSError as error:
            logger.warning("the precision verdict is not kept (%s: %s): the next start checks again", folder, error)
            return False
        return True

    @contextlib.contextmanager
    def preparing(self, folder: Path, block: bool = True) -> Iterator[bool | None]:
        """Held while this process exports and checks the model of ``folder``: another process (or
        embedder) that asks waits here until it is done, then finds the verdict and the export kept.

        Yields whether the lock is held: False where the folder cannot be written (each prepares alone);
        None, without waiting, where ``block`` is False and another holds it.
        """
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(folder / self.LOCK_FILE, "a+b")  # noqa: SIM115  # closed below, after the lock
        except OSError as error:
            logger.warning("no lock on %s (%s): preparing without it", folder, error)
            yield False
            return
        with handle:
            try:  # released when the file is closed, or the process ends
                fcntl.flock(handle, fcntl.LOCK_EX if block else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            yield True
