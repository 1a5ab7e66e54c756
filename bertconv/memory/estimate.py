"""The peak memory of one step of a converted encoder, from its shapes alone (no torch).

The estimate replays, operator by operator, what a Hugging Face encoder does in transformers 5
under PyTorch: which tensors each operator allocates, in which dtype, which of them autograd
keeps for the backward pass and when each is freed, and adds the weights, gradients and optimizer
state. The peak of that replay is the estimate; the tensors alive at that instant are its
breakdown. Written by hand because no library models activations: ``accelerate estimate-memory``
counts parameters only.

What the replay follows, and where it comes from:

- the modules' code in transformers 5 (``modeling_bert``, ``modeling_albert``, ``modeling_electra``):
  which intermediate each ``forward`` keeps in a local variable until it returns, that the MLM
  logits are computed for every position, that ``gelu_new`` is eight elementwise operators;
- PyTorch's operators: ``torch.matmul`` on the attention's transposed views copies both operands;
  dropout on CPU multiplies by a mask of the input's dtype, on CUDA ``native_dropout`` keeps a
  bool mask; scaled-dot-product attention on CPU runs the fused flash kernel unless dropout is on
  (then the math fallback, which materialises the scores and, under autocast, upcasts to float32);
  on CUDA a fused kernel (flash, memory-efficient or cuDNN) that keeps only its output and
  log-sum-exp;
- ``torch.autocast``'s op lists (aten/src/ATen/autocast_mode.cpp): matmuls and ``linear`` in half
  precision with the casts of float32 weights cached until the autocast region ends; on CUDA
  ``layer_norm``, ``softmax``, ``log_softmax`` and ``pow`` in float32; on CPU those run in their
  input's dtype and ``cross_entropy`` in float32; every other operator in its inputs' promoted dtype;
- ``torch.optim``: AdamW keeps two float32 tensors per parameter; on CPU it updates one parameter
  at a time (two temporaries of that parameter's size), on CUDA all at once (``foreach``: one
  temporary of every parameter's size);
- on CUDA, the caching allocator rounds each block to 512 bytes and allocates cuBLAS's workspace
  (per handle, and training uses two: the forward's thread and autograd's).

The training step measured and estimated is one of a fine-tuning loop at its steady state: the
optimizer's state exists, gradients are freed by ``zero_grad`` after the step, and the forward's
outputs (the logits) stay alive until the step is over.
"""
from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from ..errors import InputError
from .shape import EncoderShape

DTYPES = ("float32", "float16", "bfloat16")
MODES = ("infer", "train")
OPTIMIZERS = ("adamw", "sgd", "none")
ATTENTIONS = ("eager", "sdpa")
DEVICES = ("cuda", "cpu")
#: transformers 5 loads BERT, ALBERT and ELECTRA with attn_implementation="sdpa" whenever the
#: installed torch has it (``model.config._attn_implementation`` after ``from_pretrained``)
DEFAULT_ATTENTION = "sdpa"

#: the parts of a layer, in forward order, each freeing its saved tensors as its backward ends
_LAYER_PARTS = ("attention", "attention output", "feed-forward", "feed-forward output")
_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "bool": 1, "int64": 8}
_CUDA_BLOCK = 512
#: cuBLAS's default workspace per handle and stream (CUBLAS_WORKSPACE_CONFIG unset): 32 MiB on
#: Hopper, ":4096:2:16:8" elsewhere; cuBLASLt shares it
_CUBLAS_WORKSPACE = {"sm90": 32 * 2**20, "default": 4096 * 1024 * 2 + 16 * 1024 * 8}

# Components of the breakdown, in the order a report lists them.
ACTIVATION_PREFIX = "activations: "
WEIGHTS = "weights"
HALF_WEIGHTS = "weights: half-precision copies"
GRADIENTS = "gradients"
OPTIMIZER_STATE = "optimizer state"
INPUTS = "inputs"
EMBEDDINGS = "activations: embeddings"
QKV = "activations: attention q/k/v"
SCORES = "activations: attention scores and probabilities"
ATTENTION_OUT = "activations: attention output"
MASK = "activations: attention mask"
DROPOUT = "activations: dropout masks"
FEED_FORWARD = "activations: feed-forward"
LAYER_NORM = "activations: LayerNorm"
HIDDEN = "activations: hidden states"
CASTS = "activations: autocast copies"
HEADS = "activations: heads"
LOGITS = "activations: MLM logits"
LOSS = "activations: loss"
BACKWARD = "temporaries: backward"
STEP = "temporaries: optimizer step"
WORKSPACE = "allocator workspace"
COMPONENTS = (WEIGHTS, HALF_WEIGHTS, GRADIENTS, OPTIMIZER_STATE, INPUTS, EMBEDDINGS, QKV, SCORES,
              ATTENTION_OUT, MASK, DROPOUT, FEED_FORWARD, LAYER_NORM, HIDDEN, CASTS, HEADS, LOGITS, LOSS,
              BACKWARD, STEP, WORKSPACE)


@dataclass(frozen=True)
class Settings:
    batch: int
    seq_len: int
    dtype: str = "float32"
    mode: str = "infer"
    optimizer: str = "adamw"
    attention: str = DEFAULT_ATTENTION
    device: str = "cuda"
    #: the GPU's architecture where known ("sm90": Hopper), for cuBLAS's workspace
    arch: str = "default"

    def check(self) -> None:
        for name, value, choices in (("dtype", self.dtype, DTYPES), ("mode", self.mode, MODES),
                                     ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("attention", self.attention, ATTENTIONS), ("device", self.device, DEVICES)):
            if value not in choices:
                raise InputError(f"unknown {name} {value!r}", hint=f"choose from {', '.join(choices)}")
        for name, value in (("batch", self.batch), ("seq-len", self.seq_len)):
            if not isinstance(value, int) or value < 1:
                raise InputError(f"--{name} must be a positive integer, got {value!r}")


class _Tensor:
    __slots__ = ("category", "dtype", "freed", "nbytes", "numel", "refs", "saves")

    def __init__(self, numel: int, dtype: str, nbytes: int, category: str):
        self.numel, self.dtype, self.nbytes, self.category = numel, dtype, nbytes, category
        self.refs, self.saves, self.freed = 1, 0, False


class _Timeline:
    """Live bytes by component as tensors are created and freed; the peak and what made it."""

    def __init__(self, device: str):
        self.round = device == "cuda"
        self.live = 0
        self.by_component: dict[str, int] = defaultdict(int)
        self.peak = -1
        self.peak_breakdown: dict[str, int] = {}
        self.peak_moment = ""
        self.moment = "start"

    def nbytes(self, numel: int, dtype: str) -> int:
        n = numel * _BYTES[dtype]
        if self.round and n:  # the CUDA caching allocator's smallest block and rounding
            n = -(-n // _CUDA_BLOCK) * _CUDA_BLOCK
        return n

    def _observe(self) -> None:
        if self.live > self.peak:
            self.peak = self.live
            self.peak_breakdown = {k: v for k, v in self.by_component.items() if v}
            self.peak_moment = self.moment

    def new(self, numel: int, dtype: str, category: str) -> _Tensor:
        t = _Tensor(numel, dtype, self.nbytes(numel, dtype), category)
        self.live += t.nbytes
        self.by_component[category] += t.nbytes
        self._observe()
        return t

    def _release(self, t: _Tensor) -> None:
        if not t.freed and t.refs <= 0 and t.saves <= 0:
            t.freed = True
            self.live -= t.nbytes
            self.by_component[t.category] -= t.nbytes

    def drop(self, *tensors: _Tensor | None) -> None:
        for t in tensors:
            if t is not None:
                t.refs -= 1
                self._release(t)

    def unsave(self, t: _Tensor) -> None:
        t.saves -= 1
        self._release(t)

    def spike(self, nbytes: int, category: str) -> None:
        """Bytes alive for an instant (a backward or optimizer temporary), then freed."""
        self.live += nbytes
        self.by_component[category] += nbytes
        self._observe()
        self.live -= nbytes
        self.by_component[category] -= nbytes


class _Replay:
    """One step of an encoder, operator by operator, on a :class:`_Timeline`."""

    def __init__(self, shape: EncoderShape, s: Settings):
        from ..families import get_family

        self.shape, self.s = shape, s
        #: the family's hooks for the parts it replays otherwise than BERT (MemoryStructure)
        self.structure = get_family(shape.family).memory
        if self.structure.attention is not None:  # its own modeling code computes attention one way
            s = replace(s, attention=self.structure.attention)
        self.tl = _Timeline(s.device)
        self.train = s.mode == "train"
        self.cuda = s.device == "cuda"
        self.half = None if s.dtype == "float32" else s.dtype
        self.tokens = s.batch * s.seq_len
        self.scores = s.batch * shape.heads * s.seq_len * s.seq_len
        self.cast_cache: dict[str, _Tensor] = {}
        #: tensors autograd keeps, by the part of the model whose backward frees them
        self.saved: dict[str, list[_Tensor]] = {}
        self.group = "embeddings"
        self.per_layer: dict[str, int] = {}
        #: layer index -> (tokens, attention scores) it ran over, where not the input's
        self.layer_sizes: dict[int, tuple[int, int]] = {}
        #: a family's tensors that a later layer reads (CANINE's character encoding), by name
        self.held: dict[str, _Tensor] = {}

    # ---------------------------------------------------------------------------- bookkeeping
    def save(self, *tensors: _Tensor) -> None:
        if not self.train:
            return
        for t in tensors:
            t.saves += 1
            self.saved.setdefault(self.group, []).append(t)

    def alias(self, t: _Tensor) -> _Tensor:
        t.refs += 1
        return t

    def new(self, numel: int, dtype: str, category: str) -> _Tensor:
        return self.tl.new(numel, dtype, category)

    @contextmanager
    def at_length(self, seq_len: int, keys: int | None = None):
        """Operators over sequences of ``seq_len`` positions whose attention reads ``keys`` keys
        each (default: as many): the layers a family runs shorter than its input (Funnel's pooled
        blocks, CANINE's molecules) or in windows (CANINE's local attention)."""
        before = self.s, self.tokens, self.scores
        self.s = replace(self.s, seq_len=seq_len)
        self.tokens = self.s.batch * seq_len
        self.scores = self.s.batch * self.shape.heads * seq_len * (keys or seq_len)
        try:
            yield
        finally:
            self.s, self.tokens, self.scores = before

    # ------------------------------------------------------------------------------ operators
    @staticmethod
    def promote(*dtypes: str) -> str:
        return "float32" if "float32" in dtypes else dtypes[0]

    def _cast_in(self, x: _Tensor, numel: int | None = None) -> tuple[_Tensor, bool]:
        """A matmul's input under autocast: a new half-precision copy unless it is one already
        (``numel``: of a view of ``x``, such as the pooler's first tokens)."""
        if self.half and x.dtype != self.half:
            return self.new(numel or x.numel, self.half, CASTS), True
        return x, False

    def _half_weight(self, key: str, numel: int) -> _Tensor | None:
        """autocast casts a float32 weight once per region and caches the copy until the region ends."""
        if not self.half:
            return None
        w = self.cast_cache.get(key)
        if w is None:
            w = self.cast_cache[key] = self.new(numel, self.half, HALF_WEIGHTS)
        return w

    def linear(self, x: _Tensor, fan_in: int, fan_out: int, key: str, category: str, rows: int) -> _Tensor:
        xin, cast = self._cast_in(x, rows * fan_in)
        w = self._half_weight(key, fan_in * fan_out + fan_out)
        out = self.new(rows * fan_out, self.half or "float32", category)
        self.save(xin)  # addmm keeps its input for the weight's gradient, and the weight for the input's
        if w is not None:
            self.save(w)
        if cast:
            self.tl.drop(xin)
        return out

    def dropout(self, x: _Tensor, p: float) -> _Tensor:
        if not self.train or p <= 0:
            return self.alias(x)  # F.dropout returns its input unchanged
        if self.cuda:  # native_dropout: the output and a bool mask
            out = self.new(x.numel, x.dtype, x.category)
            mask = self.new(x.numel, "bool", DROPOUT)
        else:  # input * (bernoulli noise / (1 - p)), the noise in the input's dtype
            mask = self.new(x.numel, x.dtype, DROPOUT)
            out = self.new(x.numel, x.dtype, x.category)
        self.save(mask)
        self.tl.drop(mask)
        return out

    def layer_norm(self, x: _Tensor, rows: int, category: str) -> _Tensor:
        xin = x
        if self.cuda and self.half and x.dtype != "float32":  # fp32 on CUDA's autocast list
            xin = self.new(x.numel, "float32", CASTS)
        out = self.new(x.numel, xin.dtype, category)
        mean, rstd = self.new(rows, "float32", LAYER_NORM), self.new(rows, "float32", LAYER_NORM)
        self.save(xin, mean, rstd)
        self.tl.drop(mean, rstd)
        if xin is not x:
            self.tl.drop(xin)
        return out

    def add(self, a: _Tensor, b: _Tensor, category: str) -> _Tensor:
        return self.new(max(a.numel, b.numel), self.promote(a.dtype, b.dtype), category)

    def elementwise(self, x: _Tensor, dtype: str | None = None) -> _Tensor:
        return self.new(x.numel, dtype or x.dtype, x.category)

    def activation(self, x: _Tensor, kind: str) -> _Tensor:
        if kind != "gelu_new":
            out = self.elementwise(x)
            self.save(out if kind in ("relu", "tanh") else x)  # relu and tanh keep their output
            return out
        # NewGELUActivation: 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * pow(x, 3))))
        halved = self.elementwise(x)                                   # 0.5 * x
        xin = x
        if self.cuda and self.half:  # pow is on CUDA autocast's fp32 list
            xin = self.new(x.numel, "float32", CASTS)
        cube = self.elementwise(xin)
        self.save(xin)
        scaled = self.elementwise(cube)
        self.tl.drop(cube)
        inner = self.add(x, scaled, x.category)
        self.tl.drop(scaled)
        arg = self.elementwise(inner)
        self.tl.drop(inner)
        tanh = self.elementwise(arg)
        self.tl.drop(arg)
        self.save(tanh)
        one_plus = self.elementwise(tanh)
        self.tl.drop(tanh)
        out = self.new(x.numel, self.promote(halved.dtype, one_plus.dtype), x.category)
        self.save(halved, one_plus)
        self.tl.drop(halved, one_plus)
        if xin is not x:
            self.tl.drop(xin)
        return out

    def softmax(self, x: _Tensor) -> _Tensor:
        dtype = "float32" if self.cuda and self.half else x.dtype  # fp32 on CUDA's list only
        copy = None
        if dtype != x.dtype and x.dtype == "bfloat16":  # float16 has a half-to-float kernel; bfloat16 is copied
            copy = self.new(x.numel, "float32", SCORES)
        out = self.new(x.numel, dtype, SCORES)
        self.save(out)
        self.tl.drop(copy)
        return out

    # ------------------------------------------------------------------------------ attention
    def attention(self, q: _Tensor, k: _Tensor, v: _Tensor, mask: _Tensor) -> tuple[_Tensor, _Tensor | None]:
        """The attention function transformers calls; returns its output and the attention
        weights the layer holds until it returns (eager only)."""
        sh, t, p = self.shape, self.tokens, self.scores
        fused = self.s.attention == "sdpa" and (self.cuda or not self.train or sh.attention_dropout <= 0)
        if self.s.attention == "sdpa":
            # SDPA takes the bool mask and makes an additive one of the query's dtype, each call
            conv = self.new(self.scores // sh.heads, q.dtype, MASK)
        if fused:
            out = self.new(t * sh.hidden, q.dtype, ATTENTION_OUT)
            lse = self.new(self.s.batch * sh.heads * self.s.seq_len, "float32", SCORES)
            self.save(q, k, v, out, lse, conv)  # the fused backward takes the additive mask too
            self.tl.drop(lse, conv)
            return out, None
        if self.s.attention == "sdpa":
            return self._sdpa_math(q, k, v, conv), None
        # eager_attention_forward: matmul copies the transposed views into contiguous batches
        qc, kc = self.new(t * sh.hidden, q.dtype, QKV), self.new(t * sh.hidden, k.dtype, QKV)
        scores = self.new(p, q.dtype, SCORES)
        self.save(qc, kc)
        self.tl.drop(qc, kc)
        scaled = self.elementwise(scores)
        self.tl.drop(scores)
        masked = self.add(scaled, mask, SCORES)
        self.tl.drop(scaled)
        probs = self.softmax(masked)
        self.tl.drop(masked)
        dropped = self.dropout(probs, sh.attention_dropout)
        self.tl.drop(probs)
        pin, cast = self._cast_in(dropped)
        vc = self.new(t * sh.hidden, v.dtype, QKV)
        self.save(pin, vc)
        context = self.new(t * sh.hidden, pin.dtype, ATTENTION_OUT)
        self.tl.drop(vc)
        if cast:
            self.tl.drop(pin)
        out = self.new(t * sh.hidden, context.dtype, ATTENTION_OUT)  # transpose(1, 2).contiguous()
        self.tl.drop(context)
        return out, dropped

    def _sdpa_math(self, q: _Tensor, k: _Tensor, v: _Tensor, conv: _Tensor) -> _Tensor:
        """PyTorch's math fallback, as run on CPU when dropout is on: float32 throughout (half
        inputs are upcast), q and k each scaled, the scores and the dropout mask materialised."""
        sh, t, p = self.shape, self.tokens, self.scores
        upcast = q.dtype != "float32"
        acc = "float32"
        ups = [self.new(t * sh.hidden, acc, QKV) for _ in range(3)] if upcast else []
        q_scaled, k_scaled = self.new(t * sh.hidden, acc, QKV), self.new(t * sh.hidden, acc, QKV)
        qc, kc = self.new(t * sh.hidden, acc, QKV), self.new(t * sh.hidden, acc, QKV)
        scores = self.new(p, acc, SCORES)
        self.save(qc, kc)
        self.tl.drop(k_scaled, qc, kc)
        masked = self.new(p, acc, SCORES)
        self.tl.drop(scores)
        probs = self.new(p, acc, SCORES)
        self.save(probs)
        self.tl.drop(masked)
        dropped = self.dropout(probs, sh.attention_dropout)
        self.tl.drop(probs)
        vc = self.new(t * sh.hidden, acc, QKV)
        self.save(dropped, vc)
        context = self.new(t * sh.hidden, acc, ATTENTION_OUT)
        self.tl.drop(vc)
        extras = []
        if upcast:  # the output and the attention weights are cast back
            out = self.new(t * sh.hidden, q.dtype, ATTENTION_OUT)
            extras.append(self.new(p, q.dtype, SCORES))
            self.tl.drop(context)
            context = out
        self.tl.drop(q_scaled, *ups, *extras, dropped, conv)
        out = self.new(t * sh.hidden, context.dtype, ATTENTION_OUT)  # transformers: transpose(1, 2).contiguous()
        self.tl.drop(context)
        return out

    # ---------------------------------------------------------------------------------- parts
    def embeddings(self) -> _Tensor:
        return self.structure.replay_embeddings(self)

    def layer(self, x: _Tensor, index: int, mask: _Tensor) -> _Tensor:
        return self.structure.replay_layer(self, x, index, mask)

    def bert_mask(self, source: _Tensor) -> _Tensor:
        """The attention mask transformers makes for every layer: [batch, seq, seq], bool for SDPA,
        else additive in the embeddings' dtype."""
        s = self.s
        return self.new(s.batch * s.seq_len * s.seq_len, "bool" if s.attention == "sdpa" else source.dtype, MASK)

    def bert_embeddings(self, *, position_table: bool = True) -> _Tensor:
        """BERT's embeddings: word, token type and (``position_table``) position lookups, summed,
        LayerNorm, dropout."""
        sh, t = self.shape, self.tokens
        e = sh.embedding_size
        word = self.new(t * e, "float32", EMBEDDINGS)   # the embedding op is not autocast: float32
        token_type = self.new(t * e, "float32", EMBEDDINGS)
        summed = self.add(word, token_type, EMBEDDINGS)
        position = None
        if position_table:
            position = self.new(self.s.seq_len * e, "float32", EMBEDDINGS)
            first, summed = summed, self.add(summed, position, EMBEDDINGS)
            self.tl.drop(first)
        normed = self.layer_norm(summed, t, EMBEDDINGS)
        self.tl.drop(summed)
        out = self.dropout(normed, sh.hidden_dropout)
        self.tl.drop(normed, word, token_type, position)
        return out

    def bert_layer(self, x: _Tensor, index: int, mask: _Tensor) -> _Tensor:
        """One of BERT's encoder layers (ALBERT's and ELECTRA's alike)."""
        sh, t, h = self.shape, self.tokens, self.shape.hidden
        self.layer_sizes[index] = (self.tokens, self.scores)
        weights = f"layer{index % sh.distinct_layers}"
        q = self.linear(x, h, h, weights + ".q", QKV, t)
        k = self.linear(x, h, h, weights + ".k", QKV, t)
        v = self.linear(x, h, h, weights + ".v", QKV, t)
        context, held = self.structure.replay_attention(self, q, k, v, mask)
        self.tl.drop(q, k, v)
        self.group = f"layer {index} attention output"
        dense = self.linear(context, h, h, weights + ".attention_output", HIDDEN, t)
        dropped = self.dropout(dense, sh.hidden_dropout)
        self.tl.drop(dense)
        residual = self.add(dropped, x, LAYER_NORM)
        attention_output = self.layer_norm(residual, t, HIDDEN)
        self.tl.drop(residual, dropped, context)
        self.group = f"layer {index} feed-forward"
        inner = self.linear(attention_output, h, sh.intermediate, weights + ".intermediate", FEED_FORWARD, t)
        activated = self.activation(inner, sh.hidden_act)
        self.tl.drop(inner)
        self.group = f"layer {index} feed-forward output"
        dense = self.linear(activated, sh.intermediate, h, weights + ".output", HIDDEN, t)
        dropped = self.dropout(dense, sh.hidden_dropout if sh.ffn_dropout else 0.0)
        self.tl.drop(dense)
        residual = self.add(dropped, attention_output, LAYER_NORM)
        out = self.layer_norm(residual, t, HIDDEN)
        self.tl.drop(residual, dropped, activated, attention_output, held)
        return out

    def heads(self, sequence: _Tensor) -> list[_Tensor]:
        """The heads' forward; returns the outputs the caller keeps (logits)."""
        sh, s, t, h = self.shape, self.s, self.tokens, self.shape.hidden
        kept = []
        pooled = None
        if sh.pooler:
            first = self.linear(sequence, h, h, "pooler", HEADS, s.batch)  # the first token of each sequence
            pooled = self.activation(first, "tanh")
            self.tl.drop(first)
        for head in sh.outputs:
            if head == "mlm":
                w = sh.mlm_width
                dense = self.linear(sequence, h, w, "mlm.dense", HEADS, t)
                act = self.activation(dense, sh.mlm_activation)
                self.tl.drop(dense)
                normed = self.layer_norm(act, t, HEADS)
                self.tl.drop(act)
                logits = self.linear(normed, w, sh.vocab, "word_embeddings", LOGITS, t)
                self.tl.drop(normed)
                kept.append(logits)
                if self.train:
                    self.group = "loss"
                    self.cross_entropy(logits)
                    self.group = "heads"
            elif head in ("nsp", "classifier") and pooled is not None:
                kept.append(self.linear(pooled, h, 2 if head == "nsp" else sh.num_labels, head, HEADS, s.batch))
            elif head == "squad":
                kept.append(self.linear(sequence, h, 2, "squad", HEADS, t))
            elif head == "discriminator":
                dense = self.linear(sequence, h, h, "discriminator.dense", HEADS, t)
                act = self.activation(dense, sh.hidden_act)
                self.tl.drop(dense)
                kept.append(self.linear(act, h, 1, "discriminator.prediction", HEADS, t))
                self.tl.drop(act)
        self.tl.drop(pooled)
        return kept

    def cross_entropy(self, logits: _Tensor) -> None:
        """CrossEntropyLoss over (tokens, vocab): log_softmax in float32, kept for nll_loss's backward."""
        copy = None
        if logits.dtype != "float32" and not (self.cuda and logits.dtype == "float16"):
            copy = self.new(logits.numel, "float32", LOSS)  # CPU: cross_entropy on the fp32 list
        log_probs = self.new(logits.numel, "float32", LOSS)
        self.save(log_probs)
        self.tl.drop(copy, log_probs)

    # ------------------------------------------------------------------------------ the step
    def part_parameters(self) -> dict[str, int]:
        h, inner = self.shape.hidden, self.shape.intermediate
        return {"attention": 3 * h * h + 3 * h, "attention output": h * h + h + 2 * h,
                "feed-forward": h * inner + inner, "feed-forward output": inner * h + h + 2 * h}

    def parameter_groups(self) -> dict[str, int]:
        """Parameters whose gradients each part's backward produces."""
        sh = self.shape
        groups = {"embeddings": sh.embedding_parameters() + sh.projection_parameters()}
        # a shared block's gradient exists from the backward of its last use on (autograd sums
        # every use's into one buffer)
        last_use = {i % sh.distinct_layers: i for i in range(sh.layers)}
        for i in range(sh.layers):
            own = last_use[i % sh.distinct_layers] == i
            for part, count in self.part_parameters().items():
                groups[f"layer {i} {part}"] = count if own else 0
        groups["heads"] = sum(sh.head_parameters().values())
        total = sum(groups.values())
        groups["embeddings"] += sh.parameters - total  # whatever the tensors hold beyond the structure
        return groups

    def run(self) -> None:
        sh, s, t = self.shape, self.s, self.tokens
        tl = self.tl
        tl.moment = "weights"
        tl.new(sh.parameters, "float32", WEIGHTS)
        tl.new(sh.buffers_bytes() // 8, "int64", WEIGHTS)
        tl.new(2 * t, "int64", INPUTS)
        if self.train:
            labels = t if any(h in sh.outputs for h in ("mlm", "discriminator")) else 0
            tl.new(labels + s.batch, "int64", INPUTS)
            if s.optimizer == "adamw":
                tl.new(2 * sh.parameters, "float32", OPTIMIZER_STATE)
                if not self.cuda:  # AdamW's step counts: a float32 scalar per parameter, kept on the CPU
                    for _ in range(sh.parameter_tensors()):
                        tl.new(1, "float32", OPTIMIZER_STATE)
        if s.device == "cuda":
            handles = 2 if self.train else 1
            tl.live += handles * _CUBLAS_WORKSPACE.get(s.arch, _CUBLAS_WORKSPACE["default"])
            tl.by_component[WORKSPACE] += handles * _CUBLAS_WORKSPACE.get(s.arch, _CUBLAS_WORKSPACE["default"])

        # ---- forward
        tl.moment = "forward: embeddings"
        self.group = "embeddings"
        embedding_output = self.embeddings()
        x = self.alias(embedding_output)  # the model keeps embedding_output until it returns
        mask_source = embedding_output
        if sh.embedding_projection:
            projected = self.linear(x, sh.embedding_size, sh.hidden, "projection", HIDDEN, t)
            self.tl.drop(x)
            x = projected
            if not sh.projection_in_encoder:  # the model's embedding_output is the projection
                self.tl.drop(embedding_output)
                embedding_output = mask_source = self.alias(projected)
        mask = self.structure.replay_mask(self, mask_source)
        for i in range(sh.layers):
            tl.moment = f"forward: layer {i}"
            self.group = f"layer {i} attention"
            out = self.layer(x, i, mask)
            self.tl.drop(x)
            x = out
            if i == 0 and self.train:
                self.per_layer = self._saved_by_component(*(f"layer 0 {part}" for part in _LAYER_PARTS))
        self.tl.drop(mask, embedding_output, *self.held.values())  # the base model returns: its outputs are left
        self.held.clear()
        tl.moment = "forward: heads"
        self.group = "heads"
        kept = self.heads(x)
        self.tl.drop(x)
        tl.moment = "forward: end of autocast" if self.half else "forward: end"
        for w in self.cast_cache.values():
            self.tl.drop(w)
        if not self.train:
            self.tl.drop(*kept)
            return
        self.backward()
        self.step()
        self.tl.drop(*kept)

    def _saved_by_component(self, *groups: str) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        seen = set()
        for tensor in (t for g in groups for t in self.saved.get(g, [])):
            if id(tensor) not in seen and tensor.category != HALF_WEIGHTS:
                seen.add(id(tensor))
                out[tensor.category] += tensor.nbytes
        return dict(out)

    def backward(self) -> None:
        sh, t, tl = self.shape, self.tokens, self.tl
        params = self.parameter_groups()
        grads: list[_Tensor] = []

        def release(group: str) -> None:
            for tensor in self.saved.pop(group, []):
                tl.unsave(tensor)

        def grad_of(group: str, dtype: str = "float32") -> _Tensor | None:
            if not params.get(group):
                return None
            grads.append(tl.new(params[group], dtype, GRADIENTS))
            return grads[-1]

        # Under autocast a shared block's weights are cast once, so its uses' gradients are summed
        # in half precision at the cast, which makes the float32 gradient after the last use.
        accumulate = self.half if self.half and sh.shared_layers else "float32"
        summed_in_half: list[_Tensor] = []

        vocab_rows = t * sh.vocab if "mlm" in sh.outputs else 0
        if vocab_rows:
            tl.moment = "backward: loss"
            # nll_loss's gradient (float32) and log_softmax's (in the logits' dtype only where
            # CUDA's half-to-float kernel ran it)
            lsm = "float16" if self.cuda and self.half == "float16" else "float32"
            tl.spike(tl.nbytes(vocab_rows, "float32") + tl.nbytes(vocab_rows, lsm), BACKWARD)
            release("loss")
        tl.moment = "backward: heads"
        grad_of("heads")
        if vocab_rows:
            # the logits' gradient alive while the decoder's backward makes the word embeddings'
            # gradient, which waits for the embeddings' own (one tensor, tied)
            grads.append(tl.new(sh.vocab * sh.mlm_width, "float32", GRADIENTS))
            tl.spike(tl.nbytes(vocab_rows, "float32") + tl.nbytes(t * sh.mlm_width, "float32"), BACKWARD)
        release("heads")
        stream = tl.new(t * sh.hidden, "float32", BACKWARD)  # the gradient flowing down the layers
        for i in reversed(range(sh.layers)):
            transients = self._layer_backward_bytes(*self.layer_sizes.get(i, (t, self.scores)))
            for part in reversed(_LAYER_PARTS):  # a layer's backward runs its forward backwards
                tl.moment = f"backward: layer {i} {part}"
                grad = grad_of(f"layer {i} {part}", accumulate)
                if grad is not None and accumulate != "float32":
                    summed_in_half.append(grad)
                extra = 0
                if not params[f"layer {i} {part}"]:  # a shared block: this use's gradient and its sum
                    extra = 2 * tl.nbytes(self.part_parameters()[part], accumulate)  # with the buffer's
                tl.spike(max(transients[part], extra), BACKWARD)
                release(f"layer {i} {part}")
        for grad in summed_in_half:
            grads.append(tl.new(grad.numel, "float32", GRADIENTS))
            grads.remove(grad)
            tl.drop(grad)
        tl.moment = "backward: embeddings"
        word = sh.vocab * sh.embedding_size
        groups_embeddings = params["embeddings"] - (word if vocab_rows else 0)
        grads.append(tl.new(groups_embeddings, "float32", GRADIENTS))
        if vocab_rows:  # the embeddings' gradient and its sum with the decoder's, out of place
            tl.spike(2 * tl.nbytes(word, "float32"), BACKWARD)
        release("embeddings")
        tl.drop(stream)
        self.grads = grads

    def _layer_backward_bytes(self, t: int, scores: int) -> dict[str, int]:
        """What each part of a layer's backward holds beyond the tensors saved for it and the
        gradient flowing down the residual stream: the gradient of the part's input, and for the
        activation its backward's temporaries (gelu_new's chain holds three feed-forward-sized
        gradients at once, a one-operator activation two), for the attention two attention-weight
        gradients at a time through matmul, dropout and softmax (or, for a fused kernel, the
        gradients of q, k and v)."""
        sh, s, tl = self.shape, self.s, self.tl
        grad = self.half or "float32"
        stream = tl.nbytes(t * sh.hidden, "float32")
        chain = 3 if sh.hidden_act == "gelu_new" else 2
        fused = s.attention == "sdpa" and (self.cuda or not self.train or sh.attention_dropout <= 0)
        if fused:
            attention = 3 * tl.nbytes(t * sh.hidden, grad) + stream
        else:
            attention = 2 * tl.nbytes(scores, "float32") + 2 * stream
        return {"feed-forward output": tl.nbytes(t * sh.intermediate, grad) + 2 * stream,
                "feed-forward": chain * tl.nbytes(t * sh.intermediate, grad) + stream,
                "attention output": tl.nbytes(t * sh.hidden, grad) + 2 * stream,
                "attention": attention}

    def step(self) -> None:
        sh, s, tl = self.shape, self.s, self.tl
        tl.moment = "optimizer step"
        if s.optimizer == "adamw":
            if self.cuda:  # foreach: sqrt of every exp_avg_sq at once
                tl.spike(tl.nbytes(sh.parameters, "float32"), STEP)
            else:  # one parameter at a time: sqrt, then its quotient
                largest = max(sh.vocab * sh.embedding_size, sh.hidden * sh.intermediate)
                tl.spike(2 * tl.nbytes(largest, "float32"), STEP)
        else:
            tl.spike(0, STEP)
        for g in self.grads:
            tl.drop(g)


# ================================================================================= the report
@dataclass
class Estimate:
    """The estimate for one batch size and sequence length."""

    batch: int
    seq_len: int
    peak_bytes: int
    #: where in the step the peak falls ("backward: loss", "optimizer step", ...)
    peak_at: str
    #: bytes alive at the peak, by component (see COMPONENTS)
    breakdown: dict[str, int]
    #: training: what one layer keeps for its backward, by component
    per_layer: dict[str, int]
    #: accelerate's parameters-only rule: the weights in the dtype, times 4 for training with Adam
    parameters_only_bytes: int
    fits: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "seq_len": self.seq_len, "peak_bytes": self.peak_bytes, "peak_at": self.peak_at,
                "breakdown": self.breakdown, "per_layer": self.per_layer,
                "parameters_only_bytes": self.parameters_only_bytes, "fits": self.fits}


def simulate(shape: EncoderShape, settings: Settings) -> Estimate:
    """The estimate for one setting."""
    settings.check()
    replay = _Replay(shape, settings)
    replay.run()
    tl = replay.tl
    order = {c: i for i, c in enumerate(COMPONENTS)}
    breakdown = dict(sorted(tl.peak_breakdown.items(), key=lambda kv: order.get(kv[0], len(order))))
    factor = 4 if settings.mode == "train" and settings.optimizer == "adamw" else 2 if settings.mode == "train" else 1
    params_only = shape.parameters * _BYTES[settings.dtype] * factor
    return Estimate(settings.batch, settings.seq_len, tl.peak, tl.peak_moment, breakdown, replay.per_layer,
                    params_only)
