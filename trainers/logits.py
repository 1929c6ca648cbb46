"""The output layer in chunks: each response token's logprob and entropy without [tokens x vocabulary] logits.

At the real scale (Qwen2 1.5B: vocabulary 151,936, responses of 16k tokens) one micro-batch's logits
are [tokens x 151,936]: 10 GB per float32 copy at 16k tokens, and the plain computation keeps several
such copies at once (the float32 logits, the log-softmax kept for the backward, its gradient). The
update's forward therefore stops at the final hidden states (the model body's output, before
lm_head; `UpdateLayout` in trainers/shared_prompt.py), and `token_logprobs` applies the
output layer `chunk_tokens` response tokens at a time: lm_head -> float32 / temperature ->
log-softmax -> the target's logprob and (for the metrics) the entropy. Padding positions are left
out before chunking, so they cost nothing.

Chunking the forward alone would bound nothing in the backward: autograd keeps each chunk's
[chunk x vocabulary] log-softmax until the backward reaches it, i.e. all chunks at once. So each
chunk runs under `torch.utils.checkpoint` (non-reentrant): its forward keeps only its inputs (a
slice of the hidden states, which the body keeps anyway, and its targets); the backward recomputes
the chunk's logits, backpropagates through them and frees them before the next chunk. Peak memory
of the output layer: a few [chunk x vocabulary] float32 tensors, forward or backward.

Why checkpoint and not a custom autograd Function that saves the hidden states and writes the
gradient by hand (softmax - one-hot, then through lm_head): both recompute the chunk's lm_head
matmul in the backward, which is the cost that matters (one more forward matmul per chunk, ~1/3
more output-layer compute). Checkpoint keeps autograd's own derivative of whatever the head is
(tied or untied weights, a bias, autocast's bf16 matmul then float32 softmax, temperature), so there
is no hand-written gradient to get wrong or keep in step with the forward; its recompute replays
the autocast state of the forward, and it stops once the tensors autograd needs are recomputed, so
the entropy (no gradient) is not recomputed.

Mathematically the chunked and unchunked results are identical (a token's logprob depends only on
its own hidden state); numerically they agree to rounding (tests/test_chunked_logits.py).
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint


def token_logprobs(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                   temperature: float, chunk_tokens: int, entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logp [rows, L], entropy [rows, L] or None): log pi(target) at temperature `temperature`, and the
    entropy of that tempered next-token distribution, of every response position.

    hidden [rows, L, hidden]: the body's final hidden states; targets, mask [rows, L] (mask 1 on
    response tokens). `head` is the model's output layer (`model.get_output_embeddings()`). logp carries
    the gradient; the entropy is a detached metric (computed only when `entropy`). `chunk_tokens` > 0:
    the mask's tokens in chunks of that many, each checkpointed (module docstring); positions outside
    the mask hold 0. 0: the whole grid at once, padding included (the former path)."""
    if chunk_tokens == 0:
        return _head_logprobs(head, hidden, targets, temperature, entropy)
    keep = mask.reshape(-1) > 0
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])[keep]
    flat_targets = targets.reshape(-1)[keep]
    remember = torch.is_grad_enabled() and flat_hidden.requires_grad
    pieces = []
    # at least one (possibly empty) chunk, so a micro-batch without response tokens still gives a
    # loss connected to the graph (a zero gradient), as the unchunked path does
    for start in range(0, max(1, flat_hidden.shape[0]), chunk_tokens):
        args = (head, flat_hidden[start:start + chunk_tokens], flat_targets[start:start + chunk_tokens], temperature, entropy)
        if remember:
            # the chunk is deterministic (no dropout, no sampling): no RNG state to stash and replay
            pieces.append(checkpoint(_head_logprobs, *args, use_reentrant=False, preserve_rng_state=False))
        else:
            pieces.append(_head_logprobs(*args))
    logp = _scatter(keep, torch.cat([p[0] for p in pieces]), mask.shape)
    ent = _scatter(keep, torch.cat([p[1] for p in pieces]), mask.shape) if entropy else None
    return logp, ent


def _head_logprobs(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, temperature: float,
                   entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One chunk (or the whole grid): [..., hidden] -> logp [...], entropy [...] or None."""
    logits = head(hidden)
    # float32 at least (bf16 under autocast; a float64 model stays float64), divided in place: neither
    # the cast's nor the division's backward needs its output, so one [tokens x vocabulary] copy fewer
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32)).div_(temperature)
    logp_all = torch.log_softmax(logits, dim=-1)
    del logits
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if not entropy:
        return logp, None
    with torch.no_grad():  # as trainers.core.token_entropy, from the log-softmax at hand
        ent = -logp_all.exp().mul_(logp_all).sum(-1)
    return logp, ent


def _scatter(keep: torch.Tensor, values: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """`values` (one per True of `keep`, in order) back on the [rows, L] grid, zeros elsewhere."""
    return values.new_zeros(keep.shape).masked_scatter(keep, values).view(shape)
