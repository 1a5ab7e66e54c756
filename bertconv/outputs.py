"""The named outputs that both forward passes (our PyTorch model and the independent reference
over the original TF names) produce, and that ``validate`` compares one by one.

Inputs are a dict of int64 arrays ``input_ids``, ``token_type_ids``, ``attention_mask`` (1 for a
real token, 0 for padding), each ``[batch, seq_len]``.
"""
from __future__ import annotations

EMBEDDINGS = "embeddings"                # [B, T, E] after the embedding LayerNorm
SEQUENCE = "sequence_output"             # [B, T, H] the last layer's output
POOLED = "pooled_output"                 # [B, H]
MLM_LOGITS = "mlm_logits"                # [B, T, vocab]
NSP_LOGITS = "nsp_logits"                # [B, 2] (ALBERT: sentence order)
CLASSIFIER_LOGITS = "classifier_logits"  # [B, num_labels]
SPAN_LOGITS = "span_logits"              # [B, T, 2]; channel 0 is start, 1 is end
DISCRIMINATOR_LOGITS = "discriminator_logits"  # [B, T] (ELECTRA)


def layer(i: int) -> str:
    """[B, T, H] the output of encoder layer ``i`` (0-based)."""
    return f"layer_{i}"


HEAD_OUTPUTS = {
    "mlm": MLM_LOGITS,
    "nsp": NSP_LOGITS,
    "classifier": CLASSIFIER_LOGITS,
    "squad": SPAN_LOGITS,
    "discriminator": DISCRIMINATOR_LOGITS,
}


def ordered(names, num_layers: int) -> list[str]:
    """Outputs in the order data flows through the model (for 'first diverging output'); names
    this module does not list (a family's own heads) follow, sorted, so none is ever left out."""
    order = [EMBEDDINGS] + [layer(i) for i in range(num_layers)] + [SEQUENCE, POOLED] + list(HEAD_OUTPUTS.values())
    names = set(names)
    known = [n for n in order if n in names]
    return known + sorted(names - set(known))
