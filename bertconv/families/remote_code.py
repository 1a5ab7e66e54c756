"""Capability: a family transformers has no class for ships its own modeling code in the Hugging
Face directory, the way model repositories on the Hub do: ``configuration_<name>.py``,
``modeling_<name>.py`` and ``auto_map`` in config.json, so that
``AutoModel.from_pretrained(directory, trust_remote_code=True)`` runs it.

There is one source of truth: the family's ``model.py``, which imports only torch so that bertconv
runs it without transformers. ``modeling_<name>.py`` is that module's source, word for word,
followed by thin transformers classes (written here from the family's names) that build each
architecture from the module's class of the same heads and return transformers' output objects.
A transformers class adopts the children of the model.py class it wraps, so its state-dict names
are bertconv's (``nezha.encoder.layer.0...``), and its forward is that class's forward.
"""
from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

#: per head set, the transformers output fields and the named output (``bertconv.outputs``) each holds
_OUTPUT_FIELDS = {
    "": {"last_hidden_state": "sequence_output", "pooler_output": "pooled_output"},
    "mlm": {"logits": "mlm_logits"},
    "mlm,nsp": {"prediction_logits": "mlm_logits", "seq_relationship_logits": "nsp_logits"},
    "classifier": {"logits": "classifier_logits"},
    "discriminator": {"logits": "discriminator_logits"},
    "nsp": {"logits": "nsp_logits"},
    # a span head's start and end logits: channels 0 and 1 of ``span_logits``
    "squad": {"start_logits": "span_logits[..., 0]", "end_logits": "span_logits[..., 1]"},
}


def _read_output(named: str) -> str:
    """The expression reading an output field from the model's dict: a named output, or a part of
    one (``span_logits[..., 0]``)."""
    name, bracket, index = named.partition("[")
    return f"named.get({name!r})" if not bracket else f"named[{name!r}][{index}"


@dataclass(frozen=True)
class RemoteCode:
    """What a family's own modeling code for transformers is made of."""

    #: the file stem: ``configuration_<name>.py`` and ``modeling_<name>.py``
    name: str
    #: the class-name prefix (``Nezha``: ``NezhaConfig``, ``NezhaPreTrainedModel``)
    prefix: str
    #: the model_type of the configuration class (the family's)
    model_type: str
    #: the module whose source is written (imports only torch)
    model_module: str
    #: Hugging Face architecture -> the model module's class that computes it
    classes: dict[str, str]
    #: Hugging Face architecture -> its heads (sorted, comma-joined: "", "mlm", "mlm,nsp", "classifier")
    heads: dict[str, str]
    #: transformers auto class -> architecture
    auto: dict[str, str]
    #: the configuration class's fields and their defaults
    config_fields: dict[str, Any] = field(default_factory=dict)
    #: layout name -> configuration fields its library fixes where the source config says nothing
    #: (bert4keras' NEZHA: its MLM head's own LayerNorm epsilon)
    layout_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: heads -> further output fields of the family's own heads -> the named output each holds
    #: (CANINE's TyDi QA answer types)
    head_outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    #: the state-dict name of the pooler's weight (None: the family has no pooler): a
    #: directory's config says whether its weights have one
    pooler_weight: str | None = None
    #: bumped whenever the written code computes something else
    version: int = 1
    #: the configs (config.json's fields) that need this code, where transformers has a class
    #: that computes the family's other checkpoints (None: every config)
    applies: Callable[[dict], bool] | None = None
    #: the state-dict prefix of the encoder in the head classes (None: ``model_type``)
    base_model_prefix: str | None = None

    # -- the files ------------------------------------------------------------------------------
    def model_source(self) -> str:
        return inspect.getsource(importlib.import_module(self.model_module))

    def configuration_source(self) -> str:
        args = "".join(f"        {k}={v!r},\n" for k, v in self.config_fields.items())
        sets = "".join(f"        self.{k} = {k}\n" for k in self.config_fields)
        return (f'"""{self.prefix}\'s configuration for transformers (bertconv remote code, version '
                f'{self.version})."""\n'
                "from transformers import PretrainedConfig\n\n\n"
                f"class {self.prefix}Config(PretrainedConfig):\n"
                f"    model_type = {self.model_type!r}\n\n"
                f"    def __init__(\n        self,\n{args}        **kwargs,\n    ):\n"
                f"{sets}        super().__init__(**kwargs)\n")

    def modeling_source(self) -> str:
        classes = []
        for architecture, core in self.classes.items():
            heads = self.heads[architecture]
            fields = {**_OUTPUT_FIELDS[heads], **self.head_outputs.get(heads, {})}
            outputs = "".join(f"            {f}={_read_output(named)},\n" for f, named in fields.items())
            classes.append(f'''

class {architecture}({self.prefix}PreTrainedModel):
    """Runs model.py's ``{core}``."""

    core = {core}

    def __init__(self, config):
        super().__init__(config)
        adopt(self, {core}(config, with_pooler=config.with_pooler, num_labels=config.num_labels))
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states=None,
                return_dict=None, **kwargs):
        named = {core}.forward(self, input_ids, token_type_ids, attention_mask)
        return {self.prefix}ModelOutput(
{outputs}            hidden_states=hidden_states(named, self.config) if output_hidden_states else None,
        )
''')
        header = f'''"""{self.prefix} for transformers: bertconv's own model of the family (its
``{self.model_module}`` module, copied as it is below), then the transformers classes that run
it. Written by bertconv (remote code version {self.version}); load with
``AutoModel.from_pretrained(directory, trust_remote_code=True)``."""
import dataclasses
from typing import Optional

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_{self.name} import {self.prefix}Config

REMOTE_CODE_VERSION = {self.version}

# ---------------------------------------------------------------- {self.model_module}
'''
        glue = f'''

# ---------------------------------------------------------------- transformers classes
@dataclasses.dataclass
class {self.prefix}ModelOutput(ModelOutput):
    last_hidden_state: Optional[torch.FloatTensor] = None
    pooler_output: Optional[torch.FloatTensor] = None
    logits: Optional[torch.FloatTensor] = None
    prediction_logits: Optional[torch.FloatTensor] = None
    seq_relationship_logits: Optional[torch.FloatTensor] = None
    start_logits: Optional[torch.FloatTensor] = None
    end_logits: Optional[torch.FloatTensor] = None
{{extra_fields}}    hidden_states: Optional[tuple] = None


def adopt(model, built):
    """The children of ``built`` as ``model``'s own, under the same names."""
    for name, child in built.named_children():
        model.add_module(name, child)


def hidden_states(named, config):
    states = (named["embeddings"],) + tuple(named[f"layer_{{i}}"] for i in range(config.num_hidden_layers))
    if named.get("sequence_output") is not None and named["sequence_output"] is not states[-1]:
        states += (named["sequence_output"],)  # a decoder's output, after the encoder's layers
    return states


class {self.prefix}PreTrainedModel(PreTrainedModel):
    config_class = {self.prefix}Config
    base_model_prefix = {self.base_model_prefix or self.model_type!r}

    def _init_weights(self, module):
        # only weights a directory lacks are drawn: every converted one is loaded over them
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
'''
        declared = set(re.findall(r"^    (\w+): Optional", glue, flags=re.M))
        own = sorted({f for fields in self.head_outputs.values() for f in fields} - declared)
        glue = glue.replace("{extra_fields}", "".join(f"    {f}: Optional[torch.FloatTensor] = None\n" for f in own))
        return header + self.model_source() + glue + "".join(classes)

    def auto_map(self) -> dict[str, str]:
        mapping = {"AutoConfig": f"configuration_{self.name}.{self.prefix}Config"}
        mapping.update({auto: f"modeling_{self.name}.{arch}" for auto, arch in self.auto.items()})
        return mapping

    def write(self, directory: Path, config_json: dict, tensor_names, layout: str) -> list[str]:
        """Writes both files into ``directory`` and states them in ``config_json`` (``auto_map``,
        whether the weights, named ``tensor_names``, have a pooler, the fields the source's
        ``layout`` fixes, and the configuration's fields the conversion left unset); returns the
        files' names (none where the config is not one that :attr:`applies`). ``model_type``
        becomes the code's own, so that transformers without ``trust_remote_code`` refuses the
        directory rather than run a stock class of the family on it."""
        if self.applies is not None and not self.applies(config_json):
            return []
        files = {f"configuration_{self.name}.py": self.configuration_source(),
                 f"modeling_{self.name}.py": self.modeling_source()}
        for name, text in files.items():
            (Path(directory) / name).write_text(text, encoding="utf-8")
        if "with_pooler" in self.config_fields:
            names = set(tensor_names)
            pooler = self.pooler_weight or ""
            bare = pooler.removeprefix((self.base_model_prefix or self.model_type) + ".")
            config_json["with_pooler"] = pooler in names or bare in names
        for key, value in self.layout_fields.get(layout, {}).items():
            config_json.setdefault(key, value)
        for key, value in self.config_fields.items():
            config_json.setdefault(key, value)
        config_json["model_type"] = self.model_type
        config_json["auto_map"] = self.auto_map()
        return list(files)

