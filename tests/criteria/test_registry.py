"""The criterion registry: names, errors, custom registration."""

import jax.numpy as jnp
import pytest

import jaxprune
from jaxprune import criteria


def test_builtin_names_registered():
  assert {"magnitude", "random", "saliency"} <= set(criteria.names())


def test_unknown_name_lists_valid_ones():
  with pytest.raises(ValueError, match="Registered criteria: .*magnitude"):
    criteria.get("magnitud")


def test_wrong_type():
  with pytest.raises(TypeError, match="criterion must be"):
    criteria.get(3)


def test_register_twice_requires_overwrite():
  @criteria.register("double_reg_test", overwrite=True)
  def first(params, **extras):
    del extras
    return params

  with pytest.raises(ValueError, match="already registered"):
    criteria.register("double_reg_test")(first)


def test_registered_custom_criterion_drives_masked():
  @criteria.register("neg_magnitude_test", overwrite=True)
  def neg(params, **extras):
    del extras
    return {k: -jnp.abs(v) for k, v in params.items()}

  pruned, _ = jaxprune.prune({"w": jnp.arange(1.0, 5.0).reshape(2, 2)}, 0.5, criterion=neg)
  assert pruned["w"].tolist() == [[1.0, 2.0], [0.0, 0.0]]
  pruned, _ = jaxprune.prune(
    {"w": jnp.arange(1.0, 5.0).reshape(2, 2)}, 0.5, criterion="neg_magnitude_test"
  )
  assert pruned["w"].tolist() == [[1.0, 2.0], [0.0, 0.0]]


def test_threshold_criterion_sparsity_is_an_outcome():
  crit = criteria.Criterion("above_two", lambda p, **e: p, threshold=2.0)
  pruned, masks = jaxprune.prune({"w": jnp.arange(6.0).reshape(2, 3)}, None, criterion=crit)
  assert masks["w"].tolist() == [[False, False, True], [True, True, True]]


def test_missing_loss_fn_and_batch_are_each_named_once_in_the_corrected_call():
  crit = criteria.Criterion("needs_both", lambda p, **e: p, needs=("loss_fn", "batch"))
  with pytest.raises(jaxprune.MissingExtraError) as err:
    crit.check_extras({})
  call = str(err.value).splitlines()[-1]
  want = "updates, state = tx.update(grads, state, params, loss_fn=loss_fn, batch=batch)"
  assert call.strip() == want
