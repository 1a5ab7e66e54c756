"""bertconv's PyTorch BigBird with google-research/bigbird's block-sparse attention, under
transformers' ``BigBird*`` state-dict names.

This module imports only torch and Python's standard library: it is written as it is into the
``modeling_bigbird_block_sparse.py`` of every converted block-sparse BigBird directory
(bertconv/families/remote_code.py), so it must stay self-contained.

Why BigBird's own code rather than transformers' ``BigBird*``: the original (bigbird/core) draws
each layer's random blocks once, when the layer is built, for ``max_encoder_length`` tokens, with
``np.random.seed(layer index)``; transformers' class in ``eval()`` attends block 0 in place of
every random block (and in training draws anew for the input's own length).

What the original computes, and so this module:

- ``BertModel`` switches to full attention at ``max_encoder_length`` 512 or less (such configs use
  transformers' stock classes); a length that is not a multiple of ``block_size`` is raised to
  the next multiple and the input padded by the difference;
- the input is ``max_encoder_length`` tokens long: the embedding adds the position table's first
  ``max_encoder_length`` rows and the attention reshapes by it, and the original's scripts pad every
  input with id 0 to that length. A shorter input here is padded so, run, and the outputs cut back
  to its length (id 0 is padding whatever the attention mask says: the original masks
  ``input_ids > 0``);
- random blocks (:func:`random_block_plan`): for lengths 1024, 2048, 3072 and 4096 the first rows of
  a plan drawn for 4096 tokens with random blocks among the first 1024 tokens' blocks; for other
  lengths the plan in parts (``get_rand_attn_plan``) with blocks per row drawn from a permutation
  minus the row's window and the global blocks. NumPy's ``RandomState`` is replayed here
  (:class:`LegacyRandomState`) so that the module needs no NumPy;
- per query block: the first and last attend every key; the second attends blocks 0, 1, 2, the last
  and its random blocks; the middle ones block 0, their three-block window, their random blocks and
  the last; the second last blocks 0, the last three and its random blocks. A random block that
  repeats one of the others is counted twice, as in the original's softmax;
- masked keys get ``-10000`` added to their scaled scores; padded queries' contexts are zero.
"""
import math
import random

import torch
import torch.nn.functional as F
from torch import nn

#: bigbird/core's additive value for masked keys
ATTENTION_MASK_VALUE = -10000.0
#: attention.py's MAX_SEQ_LEN: the length of the plan the four lengths below are cut from
PLAN_LENGTH = 4096
#: the lengths whose random blocks are the first rows of a PLAN_LENGTH plan
CUT_FROM_PLAN = (1024, 2048, 3072, 4096)
#: the tokens among whose blocks those rows draw
CUT_PLAN_REACH = 1024

ACTIVATIONS = {
    "gelu": F.gelu,  # Hugging Face's "gelu" is the exact erf form
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),  # what bigbird/core's "gelu" computes
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
    """A BigBird field of ``config``: an attribute (transformers' config) or in ``extra`` (bertconv's)."""
    value = getattr(config, name, None)
    if value is None:
        value = getattr(config, "extra", {}).get(name, default)
    return value


def padded_length(config):
    """The length the original's layers run at: ``max_encoder_length`` raised to a whole block."""
    length, block = setting(config, "max_encoder_length"), setting(config, "block_size")
    return -(-length // block) * block


# ---------------------------------------------------------------- the random blocks
class LegacyRandomState:
    """``numpy.random.RandomState(seed)``'s ``permutation`` replayed: MT19937 seeded as
    ``init_genrand``, then the Fisher-Yates shuffle that draws each index by masked rejection.
    Python's own Mersenne Twister runs the generator (its ``getrandbits(32)`` is one MT19937
    output), from the state NumPy's seeding makes; NumPy is not needed."""

    def __init__(self, seed):
        key, value = [], seed & 0xFFFFFFFF
        for position in range(624):
            key.append(value)
            value = (1812433253 * (value ^ (value >> 30)) + position + 1) & 0xFFFFFFFF
        self._generator = random.Random()
        self._generator.setstate((3, tuple(key) + (624,), None))

    def _at_most(self, high):
        if high == 0:
            return 0
        mask = high
        for shift in (1, 2, 4, 8, 16):
            mask |= mask >> shift
        while True:
            value = self._generator.getrandbits(32) & mask
            if value <= high:
                return value

    def permutation(self, values):
        shuffled = list(values)
        for i in range(len(shuffled) - 1, 0, -1):
            j = self._at_most(i)
            shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
        return shuffled


def _fill(width, picked):
    """A row's ``width`` random blocks from ``picked`` as NumPy's slice assignment broadcasts it
    (one block repeats; any other shortfall is the original's error)."""
    if len(picked) == width:
        return list(picked)
    if len(picked) == 1:
        return list(picked) * width
    raise ValueError(f"could not broadcast input array from shape ({len(picked)},) into shape ({width},)")


def _cut_plan_rows(rng, block, random_blocks):
    """attention.py's bigbird_block_rand_mask for PLAN_LENGTH tokens, drawing among the blocks of
    the first CUT_PLAN_REACH tokens: one row of random blocks per query block 1 .. n-2."""
    blocks = PLAN_LENGTH // block
    middle = list(range(1, blocks - 1))
    last = blocks - 1
    if CUT_PLAN_REACH > 2 * block:
        last = CUT_PLAN_REACH // block - 1
    rows = []
    for i in range(1, blocks - 1):
        start, end = i - 2, i
        if i == 1:
            pool = middle[2:last]
        elif i == 2:
            pool = middle[3:last]
        elif i in (blocks - 3, blocks - 2):
            pool = middle[:last]
        elif start > last:
            pool = middle[:last]
        elif end + 1 == last:
            pool = middle[:start]
        else:
            pool = middle[:start] + middle[end + 1:last]
        rows.append(_fill(random_blocks, rng.permutation(pool)[:random_blocks]))
    return rows


def _parts(length, block, random_blocks):
    """attention.py's get_rand_attn_plan: (end of each part in tokens, random blocks drawn in it)."""
    blocks = length // block
    if 2 * random_blocks + 5 < blocks:
        return [(2 * random_blocks + 5) * block, length], [random_blocks, 0]
    if random_blocks + 5 < blocks:
        return [(random_blocks + 5) * block, length], [random_blocks // 2, random_blocks - random_blocks // 2]
    return [length], [random_blocks]


def _row_blocks(rng, row, first, end, count):
    """attention.py's get_single_block_row_attention (a window of one block each side, one global
    block each end)."""
    shuffled = rng.permutation(range(first, end))
    illegal = {row - 1, row, row + 1, 0, end - 1}
    if row == 1:
        illegal.add(end - 2)
    if row == end - 2:
        illegal.add(1)
    picked = []
    for candidate in shuffled:
        if candidate not in illegal:
            picked.append(candidate)
        if len(picked) == count:
            break
    return picked


def _planned_rows(rng, length, block, random_blocks, heads):
    """attention.py's bigbird_block_rand_mask_with_head over the parts of :func:`_parts`."""
    ends, counts = _parts(length, block, random_blocks)
    blocks = length // block
    part_end = [e // block for e in ends]
    last_part = ends.index(length)
    table = [[[0] * sum(counts[:last_part + 1]) for _ in range(blocks)] for _ in range(heads)]

    def draw(row, low, high, first, end, count):
        for head in range(heads):
            table[head][row][low:high] = _fill(high - low, _row_blocks(rng, row, first, end, count))

    for part in range(last_part + 1):
        column = 0
        if part > 0:
            if counts[part] > 0:
                column = sum(counts[:part])
                for row in range(1, part_end[part - 1]):
                    draw(row, column, sum(counts[:part + 1]), part_end[part - 1], part_end[part], counts[part])
            for earlier in range(part):
                if counts[earlier] == 0:
                    continue
                column = sum(counts[:earlier]) if earlier > 0 else 0
                first = part_end[earlier - 1] if earlier > 0 else 0
                for row in range(part_end[part - 1], part_end[part]):
                    draw(row, column, sum(counts[:earlier + 1]), first, part_end[earlier], counts[earlier])
        if counts[part] == 0:
            continue
        first_row, first = 1, 0
        if part > 0:
            column, first_row, first = sum(counts[:part]), part_end[part - 1], part_end[part - 1]
        for row in range(first_row, part_end[part]):
            draw(row, column, sum(counts[:part + 1]), first, part_end[part], counts[part])
    return [rows[1:blocks - 1] for rows in table]


def random_block_plan(length, block, random_blocks, heads, seed):
    """The random blocks of one layer, as the original's MultiHeadedAttentionLayer draws them when
    built with ``seed`` (its layer index): ``[heads][length // block - 2][random_blocks]``, the row
    of query block ``i`` at ``i - 1``."""
    rng = LegacyRandomState(seed)
    if length in CUT_FROM_PLAN:
        return [_cut_plan_rows(rng, block, random_blocks)[:length // block - 2] for _ in range(heads)]
    return _planned_rows(rng, length, block, random_blocks, heads)


# ---------------------------------------------------------------- the model
class Embedding(nn.Embedding):
    """``nn.Embedding`` that draws no values on the meta device (the weights are loaded next)."""

    def reset_parameters(self):
        if self.weight.device.type != "meta":
            super().reset_parameters()


class BigBirdEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.word_embeddings = Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = Embedding(config.type_vocab_size, config.hidden_size)
        # bigbird/core's encoder-level LayerNorm (post-norm: it normalises the embeddings)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids, token_type_ids):
        positions = self.position_embeddings.weight[:input_ids.shape[1]]
        return self.LayerNorm(self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids) + positions)


def _masked(scores, mask):
    return scores + (1.0 - mask) * ATTENTION_MASK_VALUE


class BigBirdBlockSparseSelfAttention(nn.Module):
    def __init__(self, config, layer_index):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        self.block = setting(config, "block_size")
        self.num_random = setting(config, "num_random_blocks")
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.run_length, self.layer_index = padded_length(config), layer_index
        self._plan = None  # drawn at the first forward: a plain attribute, neither a weight nor a buffer

    def random_blocks(self, device):
        """``[heads, blocks - 2, random blocks]``: this layer's plan (seeded by its index)."""
        if self._plan is None:
            self._plan = torch.tensor(random_block_plan(self.run_length, self.block, self.num_random,
                                                        self.num_heads, self.layer_index), dtype=torch.long)
        return self._plan.to(device)

    def forward(self, x, mask):
        """``x`` [B, T, H]; ``mask`` [B, T] (1 attended, 0 padding), T a whole number of blocks."""
        batch, length, hidden = x.shape
        h, d, w, r = self.num_heads, self.head_size, self.block, self.num_random
        n = length // w
        scale = 1.0 / math.sqrt(d)

        def heads_first(t):
            return t.view(batch, length, h, d).transpose(1, 2)  # [B, h, T, d]

        query, key, value = heads_first(self.query(x)), heads_first(self.key(x)), heads_first(self.value(x))
        mask = mask.to(query.dtype)
        blocked_mask = mask.view(batch, n, w)
        to_mask = mask[:, None, None, :]  # [B, 1, 1, T]
        q, k, v = (t.reshape(batch, h, n, w, d) for t in (query, key, value))
        plan = self.random_blocks(x.device)
        head_index = torch.arange(h, device=plan.device)[:, None, None]
        random_keys = k[:, head_index, plan].reshape(batch, h, n - 2, r * w, d)
        random_values = v[:, head_index, plan].reshape(batch, h, n - 2, r * w, d)
        random_mask = blocked_mask[:, plan].reshape(batch, h, n - 2, r * w)
        random_mask = blocked_mask[:, None, 1:-1, :, None] * random_mask[:, :, :, None, :]  # [B, h, n-2, w, r*w]

        def full_row(rows):  # [B, h, w, d] against every key
            scores = _masked(torch.einsum("bhqd,bhkd->bhqk", rows, key) * scale, to_mask)
            return torch.einsum("bhqk,bhkd->bhqd", torch.softmax(scores, dim=-1), value)

        def edge_row(rows, blocks, seq_mask, random_index):  # the second and second-last query blocks
            keys = torch.cat([k[:, :, i] for i in blocks] + [random_keys[:, :, random_index]], dim=2)
            values = torch.cat([v[:, :, i] for i in blocks] + [random_values[:, :, random_index]], dim=2)
            scores = torch.einsum("bhqd,bhkd->bhqk", rows, keys) * scale
            # the four blocks by the keys' padding, the random ones by the random mask
            by_keys = torch.cat([seq_mask, seq_mask.new_ones(batch, 1, 1, r * w)], dim=-1)
            by_random = torch.cat([scores.new_ones(batch, h, w, 4 * w), random_mask[:, :, random_index]], dim=-1)
            allowed = torch.minimum(by_keys, by_random)
            return torch.einsum("bhqk,bhkd->bhqd", torch.softmax(_masked(scores, allowed), dim=-1), values)

        first = full_row(q[:, :, 0])
        second = edge_row(q[:, :, 1], (0, 1, 2, -1),
                          torch.cat([to_mask[..., :3 * w], to_mask[..., -w:]], dim=-1), 0)
        # the middle blocks: block 0, the window, the random blocks, the last block
        window_keys = torch.cat([k[:, :, 1:-3], k[:, :, 2:-2], k[:, :, 3:-1]], dim=3)  # [B, h, n-4, 3w, d]
        window_values = torch.cat([v[:, :, 1:-3], v[:, :, 2:-2], v[:, :, 3:-1]], dim=3)
        window_mask = torch.cat([blocked_mask[:, 1:-3], blocked_mask[:, 2:-2], blocked_mask[:, 3:-1]], dim=2)
        band_mask = (blocked_mask[:, 2:-2, :, None] * window_mask[:, :, None, :])[:, None]  # [B, 1, n-4, w, 3w]
        middle = q[:, :, 2:-2]
        window = _masked(torch.einsum("bhlqd,bhlkd->bhlqk", middle, window_keys) * scale, band_mask)
        randoms = _masked(torch.einsum("bhlqd,bhlkd->bhlqk", middle, random_keys[:, :, 1:-1]) * scale,
                          random_mask[:, :, 1:-1])
        to_first = _masked(torch.einsum("bhlqd,bhkd->bhlqk", middle, k[:, :, 0]) * scale,
                           to_mask[..., :w].unsqueeze(3))
        to_last = _masked(torch.einsum("bhlqd,bhkd->bhlqk", middle, k[:, :, -1]) * scale,
                          to_mask[..., -w:].unsqueeze(3))
        weights = torch.softmax(torch.cat([to_first, window, randoms, to_last], dim=-1), dim=-1)
        band = (torch.einsum("bhlqk,bhlkd->bhlqd", weights[..., w:4 * w], window_values)
                + torch.einsum("bhlqk,bhlkd->bhlqd", weights[..., 4 * w:-w], random_values[:, :, 1:-1])
                + torch.einsum("bhlqk,bhkd->bhlqd", weights[..., :w], v[:, :, 0])
                + torch.einsum("bhlqk,bhkd->bhlqd", weights[..., -w:], v[:, :, -1]))
        second_last = edge_row(q[:, :, -2], (0, -3, -2, -1),
                               torch.cat([to_mask[..., :w], to_mask[..., -3 * w:]], dim=-1), -1)
        last = full_row(q[:, :, -1])
        context = torch.cat([first[:, :, None], second[:, :, None], band, second_last[:, :, None],
                             last[:, :, None]], dim=2)
        context = context.reshape(batch, h, length, d) * mask[:, None, :, None]
        return context.transpose(1, 2).reshape(batch, length, hidden)


class BigBirdDenseAddNorm(nn.Module):
    """A projection back to the hidden size, the residual added, LayerNorm: the attention's
    output and the feed-forward's (the same state-dict names under either)."""

    def __init__(self, config, width):
        super().__init__()
        self.dense = nn.Linear(width, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class BigBirdAttention(nn.Module):
    def __init__(self, config, layer_index):
        super().__init__()
        self.self = BigBirdBlockSparseSelfAttention(config, layer_index)
        self.output = BigBirdDenseAddNorm(config, config.hidden_size)

    def forward(self, x, mask):
        return self.output(self.self(x, mask), x)


class BigBirdIntermediate(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)

    def forward(self, x):
        return self.act(self.dense(x))


class BigBirdLayer(nn.Module):
    def __init__(self, config, layer_index):
        super().__init__()
        self.attention = BigBirdAttention(config, layer_index)
        self.intermediate = BigBirdIntermediate(config)
        self.output = BigBirdDenseAddNorm(config, config.intermediate_size)

    def forward(self, x, mask):
        attention = self.attention(x, mask)
        return self.output(self.intermediate(attention), attention)


class BigBirdEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList(BigBirdLayer(config, i) for i in range(config.num_hidden_layers))


class Encoder(nn.Module):
    """The encoder (``BigBirdModel``): a dict of named outputs, ``embeddings``, ``layer_<i>``,
    ``sequence_output`` and ``pooled_output`` (bigbird/core's pooler: ``tanh`` of a bare linear
    layer on the first token), over the input's own length."""

    def __init__(self, config, with_pooler=True, num_labels=2):
        super().__init__()
        self.config = config
        self.embeddings = BigBirdEmbeddings(config)
        self.encoder = BigBirdEncoder(config)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if with_pooler else None
        self.activation = nn.Tanh()  # the pooler's, a module as transformers' BigBirdModel has it

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        length = input_ids.shape[1]
        longest, run_length = setting(self.config, "max_encoder_length"), padded_length(self.config)
        if length > longest:
            raise ValueError(f"the input is {length} tokens long; this BigBird runs at max_encoder_length "
                             f"{longest} tokens (shorter inputs are padded to it)")
        attended = input_ids > 0  # the original's padding rule
        if attention_mask is not None:
            attended = attended & (attention_mask > 0)
        pad = run_length - length
        ids, types, mask = (F.pad(t, (0, pad)) for t in (input_ids, token_type_ids, attended.long()))
        x = self.embeddings(ids, types)
        results = {"embeddings": x[:, :length]}
        sequence = results["embeddings"]
        for i, layer in enumerate(self.encoder.layer):
            x = layer(x, mask)
            sequence = results[f"layer_{i}"] = x[:, :length]
        results["sequence_output"] = sequence  # the last layer's, the same tensor
        pooler = getattr(self, "pooler", None)  # a transformers class adopts no pooler that is None
        if pooler is not None:
            results["pooled_output"] = self.activation(pooler(x[:, 0]))
        return results


class BigBirdPredictionHeadTransform(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(self.act(self.dense(x)))


class BigBirdLMPredictionHead(nn.Module):
    """run_pretraining.py's MaskedLMLayer: the transform, the word table as decoder, a bias."""

    def __init__(self, config):
        super().__init__()
        self.transform = BigBirdPredictionHeadTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x, word_embeddings):
        return torch.matmul(self.transform(x), word_embeddings.t()) + self.bias


class BigBirdHeads(nn.Module):
    """``cls``: the MLM head and, for pretraining, the next-sentence head."""

    def __init__(self, config, with_nsp):
        super().__init__()
        self.predictions = BigBirdLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2) if with_nsp else None


class MaskedLM(nn.Module):
    def __init__(self, config, with_pooler=False, num_labels=2):
        super().__init__()
        self.bert = Encoder(config, with_pooler=with_pooler)
        self.cls = BigBirdHeads(config, with_nsp=False)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        results = self.bert(input_ids, token_type_ids, attention_mask)
        results["mlm_logits"] = self.cls.predictions(results["sequence_output"],
                                                     self.bert.embeddings.word_embeddings.weight)
        return results


class PreTraining(nn.Module):
    def __init__(self, config, with_pooler=True, num_labels=2):
        super().__init__()
        self.bert = Encoder(config, with_pooler=True)
        self.cls = BigBirdHeads(config, with_nsp=True)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None):
        results = self.bert(input_ids, token_type_ids, attention_mask)
        results["mlm_logits"] = self.cls.predictions(results["sequence_output"],
                                                     self.bert.embeddings.word_embeddings.weight)
        results["nsp_logits"] = self.cls.seq_relationship(results["pooled_output"])
        return results


#: Hugging Face architecture -> the class above that computes it
ARCHITECTURES = {"BigBirdModel": Encoder, "BigBirdForMaskedLM": MaskedLM, "BigBirdForPreTraining": PreTraining}
