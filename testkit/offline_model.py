"""Builds, offline, a model with GLuCoSE-base-ja's file layout and classes: MLukeTokenizer + LukeModel + mean pooling.

The weights are random and the sentencepiece model is trained on a few sentences, so the vectors mean
nothing; but every file the real model ships is there, with the same special ids, and the product
loads it through the same code path (a local directory).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

TRAINING_TEXT = """\
東京は日本の首都であり、政治と経済の中心地です。
京都には古い寺や神社が多く、毎年たくさんの観光客が訪れます。
富士山は日本で最も高い山で、標高は三七七六メートルです。
吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。
機械学習を使って、日本語の文書から質問の答えを探します。
検索した結果は、類似度の高い順に並べて表示されます。
会議の資料はPDFで配布し、議事録はテキストファイルで保存してください。
カタカナ、ひらがな、漢字、ABC、abc、0123456789 が混ざった文章です。
「こんにちは。」と彼女は言った。『本当に？』と私は聞き返した！
全角の（括弧）や【見出し】、記号 <>[]/#-:;.,!? も使います。
社内規程によると、有給休暇は入社六か月後から取得できます。
雨が降ったので、試合は翌週に延期されました。
"""

SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
    "cls_token": "<s>",
    "sep_token": "</s>",
}


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2), encoding="utf-8")


def build_offline_model(
    directory: Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 64,
    vocab_size: int = 400,
    embedding_rows: int | None = None,
    text: str = TRAINING_TEXT,
    seed: int = 0,
) -> Path:
    """Write a GLuCoSE-shaped sentence-transformers model into ``directory`` and return it.

    ``vocab_size`` is what sentencepiece aims for (a small training text gives fewer pieces);
    ``embedding_rows`` pads the word-embedding matrix to a fixed size, such as GLuCoSE's 32,772.
    """
    import sentencepiece as spm
    import torch
    from transformers import LukeConfig, LukeModel

    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    sentences = [line for line in text.splitlines() if line.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences * 4),
        model_writer=buffer,
        model_type="unigram",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    (directory / "sentencepiece.bpe.model").write_bytes(buffer.getvalue())
    pieces = spm.SentencePieceProcessor(model_proto=buffer.getvalue()).get_piece_size()
    # fairseq layout: <s> <pad> </s> <unk>, then the pieces shifted by one, then <mask>, <ent>, <ent2>.
    mask_id = pieces + 1
    _write_json(directory / "entity_vocab.json", {"[MASK]": 0, "[UNK]": 1, "[PAD]": 2, "[MASK2]": 3})
    _write_json(directory / "added_tokens.json", {"<ent>": mask_id + 1, "<ent2>": mask_id + 2})
    _write_json(
        directory / "tokenizer_config.json",
        {
            "tokenizer_class": "MLukeTokenizer",
            "model_max_length": 512,
            "task": None,
            "max_entity_length": 32,
            "max_mention_length": 30,
            "entity_token_1": "<ent>",
            "entity_token_2": "<ent2>",
            "sp_model_kwargs": {},
            **SPECIAL_TOKENS,
        },
    )
    _write_json(
        directory / "special_tokens_map.json", {**SPECIAL_TOKENS, "additional_special_tokens": ["<ent>", "<ent2>"]}
    )

    config = LukeConfig(
        vocab_size=max(mask_id + 3, embedding_rows or 0),
        entity_vocab_size=4,
        entity_emb_size=min(256, hidden_size),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    LukeModel(config).save_pretrained(directory)

    _write_json(
        directory / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ],
    )
    _write_json(directory / "sentence_bert_config.json", {"max_seq_length": 512, "do_lower_case": False})
    (directory / "1_Pooling").mkdir(exist_ok=True)
    _write_json(
        directory / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": hidden_size,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    return directory


if __name__ == "__main__":
    import sys

    print(build_offline_model(Path(sys.argv[1] if len(sys.argv) > 1 else "models/offline-test-model")))


def build_offline_reranker(directory: Path, sentencepiece_from: Path, *, seed: int = 1) -> Path:
    """Write a tiny cross-encoder (XLM-RoBERTa for sequence classification, one score), offline.

    The architecture of the bge-reranker family; the tokenizer is XLM-R's, built on the offline
    model's sentencepiece file. Random weights again: it ranks arbitrarily but deterministically,
    which is what a test of the reranking stage needs (the stage must follow the model's scores).
    """
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification, XLMRobertaTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = XLMRobertaTokenizer(vocab_file=str(sentencepiece_from / "sentencepiece.bpe.model"))
    tokenizer.save_pretrained(directory)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    XLMRobertaForSequenceClassification(config).save_pretrained(directory)
    return directory
