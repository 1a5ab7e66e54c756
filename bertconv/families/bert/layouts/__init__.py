"""BERT's source namings, in detection order: Google's TF1 names first (the canonical layout, whose
names BERT's float64 reference reads), then every other library's. A new naming is one module here
and one line below."""
from __future__ import annotations

from .bert4keras import CHECKPOINT_LAYOUT as BERT4KERAS_CHECKPOINT
from .bert4keras import LAYOUT as BERT4KERAS
from .bert_for_tf2 import LAYOUT as BERT_FOR_TF2
from .garden import LAYOUT as TF2_GARDEN
from .garden_classifier import LAYOUT as TF2_GARDEN_CLASSIFIER
from .google import LAYOUT as GOOGLE
from .hf_tf_checkpoint import LAYOUT as HF_TF_CHECKPOINT
from .hub_keras_layer import LAYOUT as TF2_HUB_KERAS_LAYER
from .keras_bert import LAYOUT as KERAS_BERT
from .keras_hf import LAYOUT as KERAS_HF
from .keras_hub import LAYOUT as KERAS_HUB
from .savedmodel import LAYOUT as TF2_SAVEDMODEL

LAYOUTS = (GOOGLE, TF2_GARDEN, KERAS_HF, BERT_FOR_TF2, HF_TF_CHECKPOINT, BERT4KERAS, BERT4KERAS_CHECKPOINT,
           KERAS_BERT, TF2_SAVEDMODEL, KERAS_HUB, TF2_HUB_KERAS_LAYER,
           TF2_GARDEN_CLASSIFIER)
