"""The ALBERT family: Hugging Face ``Albert*`` models from google-research/albert checkpoints (and
their TF-Hub exports). One shared layer block runs every layer, so the layer count comes from
``albert_config.json``; the tokenizer is the release's SentencePiece model."""
from __future__ import annotations

from pathlib import Path

from ..base import Family
from .layouts import LAYOUT


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
    head_descriptions = {**Family.head_descriptions, "nsp": "sentence order"}

    def load_model(self, tensors, config, architecture, *, path=None, num_labels=2):
        import torch

        from ...runtime import load_state_dict_strict
        from .model import build_model

        pooler = "pooler.weight" if architecture == "AlbertModel" else "albert.pooler.weight"
        with torch.device("meta"):  # no time or memory for values that are replaced next
            model = build_model(config, architecture, self.architecture_heads[architecture],
                                with_pooler=pooler in tensors or self.needs_pooler(architecture))
        load_state_dict_strict(model, tensors, self, path=path)
        return model

    def memory_structure(self, config):
        # the embeddings have their own width, mapped in inside the encoder; every layer runs a
        # group's inner blocks, whose weights the layers share; no dropout after the feed-forward
        inner = int(config.get("inner_group_num", 1))
        width = int(config.get("embedding_size") or config["hidden_size"])
        return {"layers": int(config["num_hidden_layers"]) * inner,
                "distinct_layers": int(config.get("num_hidden_groups", 1)) * inner,
                "embedding_size": width, "embedding_projection": True, "ffn_dropout": False,
                "mlm_width": width, "projection_in_encoder": True}

    def reference(self, weights, config, inputs, *, heads=None, tower=None, kind="numpy"):
        self.numpy_reference_only(kind)
        from .reference import albert_reference_forward
        return albert_reference_forward(weights, config, inputs)

    def tokenizer_source(self, source, vocab):
        # 30k-clean.model as released, else the one *.model beside the checkpoint
        found = source.sidecar("30k-clean.model", "spiece.model")
        if found is None and source.directory is not None:
            models = sorted(p for p in Path(source.directory).glob("*.model") if p.is_file())
            found = models[0] if len(models) == 1 else None
        return found

    def write_tokenizer(self, directory, plan, lower_case):
        if plan.vocab is not None or plan.tokenizer_model is None:
            return super().write_tokenizer(directory, plan, lower_case)
        from .tokenizer import write_sentencepiece_files
        files = write_sentencepiece_files(directory, plan.tokenizer_model,
                                          model_max_length=plan.config.max_position_embeddings)
        return files, None, None


FAMILY = AlbertFamily([LAYOUT])
