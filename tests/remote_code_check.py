"""Run in a fresh process by the NEZHA and RoFormer-v2 tests: loads a converted directory with
transformers' ``Auto*.from_pretrained(directory, trust_remote_code=True)`` (the hub offline) and
prints, as JSON, the class it built and the max abs gap of each output to a golden file's, over
attended positions. Usage: ``python remote_code_check.py DIRECTORY GOLDEN.npz AUTO_CLASS ...``,
one line printed per triple (one process for all: transformers is slow to import)."""
import json
import sys

import numpy as np
import torch
import transformers

#: transformers output field -> the golden file's name for it
FIELDS = {"prediction_logits": "mlm_logits", "seq_relationship_logits": "nsp_logits",
          "pooler_output": "pooled_output", "answer_type_logits": "answer_type_logits"}


def check(directory: str, golden_path: str, auto: str) -> dict:
    gold = dict(np.load(golden_path))
    model = getattr(transformers, auto).from_pretrained(directory, trust_remote_code=True).eval()
    with torch.no_grad():
        result = model(input_ids=torch.tensor(gold["input_ids"]), attention_mask=torch.tensor(gold["attention_mask"]),
                       token_type_ids=torch.tensor(gold["token_type_ids"]), output_hidden_states=True)
    named = {"embeddings": result.hidden_states[0], "sequence_output": result.hidden_states[-1]}
    named.update({f"layer_{i}": h for i, h in enumerate(result.hidden_states[1:])})
    if getattr(result, "last_hidden_state", None) is not None:  # CANINE's is over characters, its layers not
        named["sequence_output"] = result.last_hidden_state
    if getattr(result, "start_logits", None) is not None:
        named["span_logits"] = torch.stack([result.start_logits, result.end_logits], dim=-1)
    named.update({name: getattr(result, field) for field, name in FIELDS.items()
                  if getattr(result, field, None) is not None})
    if getattr(result, "logits", None) is not None:
        named[next((n for n in ("classifier_logits", "discriminator_logits") if n in gold), "mlm_logits")] = result.logits
    attended = gold["attention_mask"].astype(bool)
    worst = {}
    for name, value in named.items():
        if name in gold:
            gap = np.abs(value.double().numpy() - gold[name].astype(np.float64))
            worst[name] = float((gap[attended] if gap.shape[:2] == attended.shape else gap).max())
    return {"class": type(model).__name__, "module": type(model).__module__, "worst": worst}


if __name__ == "__main__":
    arguments = sys.argv[1:]
    for start in range(0, len(arguments), 3):
        print(json.dumps(check(*arguments[start:start + 3])))
