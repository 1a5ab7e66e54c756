"""The ALBERT family: Hugging Face ``Albert*`` models from google-research/albert checkpoints (and
their TF-Hub exports). One shared layer block runs every layer, so the layer count comes from
``albert_config.json``; the tokenizer is the release's SentencePiece model."""
from __future__ import annotations

from ..base import Family, MemoryStructure, SentencePieceTokenizer
from .layouts import LAYOUT


class AlbertSentencePiece(SentencePieceTokenizer):
    # 30k-clean.model as released, else the one *.model beside the checkpoint
    model_names = ("30k-clean.model", "spiece.model")

    def write(self, directory, model, *, model_max_length):
        from .tokenizer import write_sentencepiece_files
        return write_sentencepiece_files(directory, model, model_max_length=model_max_length)


class AlbertMemory(MemoryStructure):
    def structure(self, config):
        # the embeddings have their own width, mapped in inside the encoder; every layer runs a
        # group's inner blocks, whose weights the layers share; no dropout after the feed-forward
        inner = int(config.get("inner_group_num", 1))
        width = int(config.get("embedding_size") or config["hidden_size"])
        return {"layers": int(config["num_hidden_layers"]) * inner,
                "distinct_layers": int(config.get("num_hidden_groups", 1)) * inner,
                "embedding_size": width, "embedding_projection": True, "ffn_dropout": False,
                "mlm_width": width, "projection_in_encoder": True}


class AlbertFamily(Family):
    name = "albert"
    model_type = "albert"
    architectures = {
        frozenset(): "AlbertModel",
        frozenset({"mlm", "nsp"}): "AlbertForPreTraining",
        frozenset({"mlm"}): "AlbertForMaskedLM",
    }
    without_pooler = frozenset({"AlbertForMaskedLM"})
    tied = {"predictions.decoder.weight": "albert.embeddings.word_embeddings.weight",
            "predictions.decoder.bias": "predictions.bias"}
    config_file = "albert_config.json"
    config_files = ("albert_config.json", "config.json")
    head_descriptions = {**Family.head_descriptions, "nsp": "sentence order"}

    pooler_weight = "albert.pooler.weight"
    sentencepiece = AlbertSentencePiece()
    memory = AlbertMemory()

    def build_model(self, config, architecture, *, with_pooler, num_labels):
        from .model import build_model
        return build_model(config, architecture, self.architecture_heads[architecture], with_pooler=with_pooler)

    def reference(self, weights, config, inputs, *, heads=None, tower=None, kind="numpy"):
        self.numpy_reference_only(kind)
        from .reference import albert_reference_forward
        return albert_reference_forward(weights, config, inputs)


FAMILY = AlbertFamily([LAYOUT])
