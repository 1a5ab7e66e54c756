"""bertconv's PyTorch CANINE (google-research/language ``language/canine/modeling.py``), under
transformers' ``Canine*`` state-dict names.

This module imports only torch: it is written as it is into the ``modeling_canine.py`` of every
converted CANINE directory (bertconv/families/remote_code.py), so it must stay self-contained.

Why CANINE's own code rather than transformers' ``Canine*``: the original's local attention adds
-10000 to the scores of padded keys, so a window of characters that holds only padding still
weighs its keys by their scores; transformers adds the dtype's minimum there, which makes those
weights uniform. Padding outputs are then different, and the upsampling convolution carries them
to the real characters just before such a window (``upsampling_kernel_size // 2`` of them), and so
to the sequence output and the span logits. The position table also keeps the original's
``max_positions`` rows (transformers' sizes it by ``num_hash_buckets``).

The forward, as the original's:

- characters: ``num_hash_functions`` hash tables, row ``((codepoint + 1) * prime_k) % num_hash_buckets``
  of table ``k``, concatenated; plus the segment and position rows; LayerNorm;
- one transformer layer of local attention, in windows of ``local_transformer_stride`` characters
  (queries and keys the same window);
- molecules: a conv of width and stride ``downsampling_rate``, GELU, its last output dropped and the
  first character's encoding put first; LayerNorm. A molecule's mask is the max over the characters
  ``[j * rate, (j + 1) * rate)`` (as the original pools it, one block after the molecule's content);
- the deep stack (Google BERT's layers) over molecules;
- upsampling: molecules 1.. repeated ``rate`` times, the last once more per remaining character,
  next to the initial character encoding; a conv of width ``upsampling_kernel_size`` with ``same``
  padding (one position before, the rest after), GELU, LayerNorm;
- one full-attention transformer layer over characters: the sequence output; the pooler reads the
  deep stack's first molecule.

TyDi QA's head (tydiqa/tydi_modeling.py): start and end logits from the sequence output, answer-type
logits from the pooled output.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

#: bert_modeling.attention_layer's additive value for masked keys
ATTENTION_MASK_VALUE = -10000.0
#: modeling.py's hash primes (up to 16 hash functions)
PRIMES = (31, 43, 59, 61, 73, 97, 103, 113, 137, 149, 157, 173, 181, 193, 211, 223)
#: tydiqa/data.py's AnswerType members
ANSWER_TYPES = 5

ACTIVATIONS = {
    "gelu": F.gelu,  # Hugging Face's "gelu" is the exact erf form
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),  # what CANINE's "gelu" computes
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "tanh": torch.tanh,
    "linear": lambda x: x,
}


def activation(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"hidden_act {name!r} is not supported; known: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def setting(config, name, default=None):
    """A CANINE field of ``config``: an attribute (transformers' config) or in ``extra`` (bertconv's)."""
    value = getattr(config, name, None)
    if value is None:
        value = getattr(config, "extra", {}).get(name, default)
    return value


class Embedding(nn.Embedding):
    """``nn.Embedding`` that draws no values on the meta device (the weights are loaded next)."""

    def reset_parameters(self):
        if self.weight.device.type != "meta":
            super().reset_parameters()


class CanineEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_hashes = setting(config, "num_hash_functions")
        self.num_buckets = setting(config, "num_hash_buckets")
        if self.num_hashes > len(PRIMES) or config.hidden_size % self.num_hashes:
            raise ValueError(f"num_hash_functions {self.num_hashes} must be at most {len(PRIMES)} and divide "
                             f"hidden_size {config.hidden_size}")
        shard = config.hidden_size // self.num_hashes
        for k in range(self.num_hashes):
            setattr(self, f"HashBucketCodepointEmbedder_{k}", Embedding(self.num_buckets, shard))
        self.char_position_embeddings = Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, codepoints, token_type_ids):
        shards = [getattr(self, f"HashBucketCodepointEmbedder_{k}")(((codepoints + 1) * PRIMES[k]) % self.num_buckets)
                  for k in range(self.num_hashes)]
        positions = self.char_position_embeddings.weight[:codepoints.shape[1]]
        return self.LayerNorm(torch.cat(shards, dim=-1) + self.token_type_embeddings(token_type_ids) + positions)


class CanineSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x, mask_adder):
        """``x`` [B, T, H]; ``mask_adder`` [B, 1, 1, T] (0 or -10000): attention within ``x``."""
        batch, seq_len, hidden = x.shape

        def heads_first(t):
            return t.view(batch, seq_len, self.num_heads, self.head_size).transpose(1, 2)  # [B, A, T, d]

        query, key, value = heads_first(self.query(x)), heads_first(self.key(x)), heads_first(self.value(x))
        scores = torch.matmul(query, key.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_size))
        # softmax in at least float32, and the padded keys' scores as the original's float32 sum
        # with -10000 rounds them (to a thousandth): a window of padding only weighs its keys by them
        compute = torch.promote_types(scores.dtype, torch.float32)
        masked = (scores.to(torch.float32) + mask_adder.to(torch.float32)).to(compute)
        scores = torch.where(mask_adder != 0, masked, scores.to(compute))
        probs = torch.softmax(scores, dim=-1).to(value.dtype)
        return torch.matmul(probs, value).transpose(1, 2).reshape(batch, seq_len, hidden)


class CanineSelfOutput(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class CanineAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self = CanineSelfAttention(config)
        self.output = CanineSelfOutput(config)

    def forward(self, x, mask_adder, window=None):
        """Full attention, or (``window``) local attention in consecutive windows of that many
        positions, each attending within itself (local_attention.py with its strides equal to its
        widths, as modeling.py calls it)."""
        if window is None:
            context = self.self(x, mask_adder)
        else:
            context = torch.cat([self.self(x[:, start:start + window], mask_adder[..., start:start + window])
                                 for start in range(0, x.shape[1], window)], dim=1)
        return self.output(context, x)


class CanineIntermediate(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)

    def forward(self, x):
        return self.act(self.dense(x))


class CanineOutput(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class CanineLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = CanineAttention(config)
        self.intermediate = CanineIntermediate(config)
        self.output = CanineOutput(config)

    def forward(self, x, mask_adder, window=None):
        attention = self.attention(x, mask_adder, window)
        return self.output(self.intermediate(attention), attention)


class CanineEncoder(nn.Module):
    def __init__(self, config, layers):
        super().__init__()
        self.layer = nn.ModuleList(CanineLayer(config) for _ in range(layers))


class CharactersToMolecules(nn.Module):
    def __init__(self, config):
        super().__init__()
        rate = setting(config, "downsampling_rate")
        self.conv = nn.Conv1d(config.hidden_size, config.hidden_size, kernel_size=rate, stride=rate)
        self.act = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, chars):
        downsampled = self.act(self.conv(chars.transpose(1, 2)).transpose(1, 2))
        # the last molecule makes room for the first character's own
        return self.LayerNorm(torch.cat([chars[:, 0:1], downsampled[:, :-1]], dim=1))


class ConvProjection(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.width = setting(config, "upsampling_kernel_size")
        self.conv = nn.Conv1d(2 * config.hidden_size, config.hidden_size, kernel_size=self.width)
        self.act = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x):
        before = (self.width - 1) // 2  # TensorFlow's "same" padding puts the odd one after
        padded = F.pad(x.transpose(1, 2), (before, self.width - 1 - before))
        return self.LayerNorm(self.act(self.conv(padded).transpose(1, 2)))


class CaninePooler(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x):
        return torch.tanh(self.dense(x[:, 0]))


def repeat_molecules(molecules, length, rate):
    """[B, M, H] -> [B, length, H]: molecules 1.. each ``rate`` times, then the last for the rest."""
    repeated = torch.repeat_interleave(molecules[:, 1:], rate, dim=1)
    rest = molecules[:, -1:].expand(-1, length - repeated.shape[1], -1)
    return torch.cat([repeated, rest], dim=1)


class Encoder(nn.Module):
    """The encoder (``CanineModel``): a dict of named outputs, ``embeddings``, ``char_encoding``,
    ``initial_molecules``, ``layer_<i>`` (the deep stack, over molecules), ``sequence_output``
    (over characters) and ``pooled_output``."""

    def __init__(self, config, with_pooler=True, num_labels=2):
        super().__init__()
        self.config = config
        self.char_embeddings = CanineEmbeddings(config)
        self.initial_char_encoder = CanineEncoder(config, 1)
        self.chars_to_molecules = CharactersToMolecules(config)
        self.encoder = CanineEncoder(config, config.num_hidden_layers)
        self.projection = ConvProjection(config)
        self.final_char_encoder = CanineEncoder(config, 1)
        self.pooler = CaninePooler(config) if with_pooler else None

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        batch, length = input_ids.shape
        # read from the config (the transformers classes adopt this class's modules, not its attributes)
        rate, window = setting(self.config, "downsampling_rate"), setting(self.config, "local_transformer_stride")
        chars = self.char_embeddings(input_ids, token_type_ids)
        results = {"embeddings": chars}
        compute = torch.promote_types(chars.dtype, torch.float32)
        char_mask = attention_mask.to(compute)
        char_adder = ((1.0 - char_mask) * ATTENTION_MASK_VALUE)[:, None, None, :]
        encoded = self.initial_char_encoder.layer[0](chars, char_adder, window)
        results["char_encoding"] = encoded
        x = self.chars_to_molecules(encoded)
        results["initial_molecules"] = x
        blocks = length // rate
        molecule_mask = char_mask[:, :blocks * rate].view(batch, blocks, rate).amax(dim=-1)
        molecule_adder = ((1.0 - molecule_mask) * ATTENTION_MASK_VALUE)[:, None, None, :]
        for i, layer in enumerate(self.encoder.layer):
            x = layer(x, molecule_adder)
            results[f"layer_{i}"] = x
        upsampled = self.projection(torch.cat([encoded, repeat_molecules(x, length, rate)], dim=-1))
        results["sequence_output"] = self.final_char_encoder.layer[0](upsampled, char_adder)
        if self.pooler is not None:
            results["pooled_output"] = self.pooler(x)
        return results


class TyDiQA(nn.Module):
    """tydi_modeling.py's create_classification_model: span logits over the characters and
    answer-type logits over the pooled output."""

    def __init__(self, config, with_pooler=True, num_labels=2):
        super().__init__()
        self.canine = Encoder(config, with_pooler=True)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.answer_type_outputs = nn.Linear(config.hidden_size, ANSWER_TYPES)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        results = self.canine(input_ids, token_type_ids, attention_mask)
        results["span_logits"] = self.qa_outputs(results["sequence_output"])
        results["answer_type_logits"] = self.answer_type_outputs(results["pooled_output"])
        return results


#: Hugging Face architecture -> the class above that computes it
ARCHITECTURES = {"CanineModel": Encoder, "CanineForTyDiQA": TyDiQA}
