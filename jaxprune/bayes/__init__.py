"""Learned sparsity: sparse variational dropout (log α) and L0 hard-concrete gates.

The layers carry extra parameters (log σ² or gate logits), a penalty enters the loss
(`kl_penalty` weighted by `kl_weight`, or `l0_penalty`), and the threshold criteria
``"log_alpha"`` / ``"l0_gate"`` (registered on import) turn the learned parameters into masks
that `jaxprune.masked` enforces, so removed weights are exact zeros. Linen layers live here;
their NNX counterparts in `jaxprune.bayes.nnx`.

Example:
  >>> import jax, jax.numpy as jnp, optax, jaxprune
  >>> from jaxprune import bayes
  >>> model = bayes.VariationalDense(4)
  >>> x = jnp.ones((8, 3))
  >>> params = model.init(jax.random.key(0), x, deterministic=True)["params"]
  >>> def loss(p, key, step):
  ...   y = model.apply({"params": p}, x, deterministic=False, rngs={"dropout": key})
  ...   kl = bayes.kl_weight(step, num_examples=8, ramp_steps=100) * bayes.kl_penalty(p)
  ...   return jnp.mean(y**2) + kl
  >>> tx = jaxprune.masked(optax.adam(1e-3), None, criterion="log_alpha",
  ...                      schedule=jaxprune.schedules.periodic(every=50))
  >>> state = tx.init(params)
  >>> grads = jax.grad(loss)(params, jax.random.key(1), 0)
  >>> updates, state = tx.update(grads, state, params)
  >>> params = optax.apply_updates(params, updates)
"""

from jaxprune.bayes import nnx
from jaxprune.bayes.criteria import (
  l0_gate_criterion,
  l0_gate_scores,
  log_alpha_criterion,
  log_alpha_scores,
)
from jaxprune.bayes.l0 import (
  L0Conv,
  L0Dense,
  deterministic_gates,
  gate_open,
  l0_penalty,
  prob_nonzero,
  sample_gates,
)
from jaxprune.bayes.variational import (
  VariationalConv,
  VariationalDense,
  keep_mask,
  kl_penalty,
  kl_weight,
  log_alpha,
  log_alphas,
  neg_kl,
)

__all__ = [
  "L0Conv",
  "L0Dense",
  "VariationalConv",
  "VariationalDense",
  "deterministic_gates",
  "gate_open",
  "keep_mask",
  "kl_penalty",
  "kl_weight",
  "l0_gate_criterion",
  "l0_gate_scores",
  "l0_penalty",
  "log_alpha",
  "log_alpha_criterion",
  "log_alpha_scores",
  "log_alphas",
  "neg_kl",
  "nnx",
  "prob_nonzero",
  "sample_gates",
]
