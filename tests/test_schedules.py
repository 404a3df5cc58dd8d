"""Schedule values and update steps at the boundaries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import schedules


def _at(sched, t, target=0.9):
  upd, s = sched(t, target)
  return bool(upd), float(s)


def test_one_shot():
  sched = schedules.one_shot(3)
  assert _at(sched, 2) == (False, 0.0)
  assert _at(sched, 3)[0] and _at(sched, 3)[1] == pytest.approx(0.9)
  assert _at(sched, 4)[0] is False and _at(sched, 4)[1] == pytest.approx(0.9)
  assert _at(schedules.get(None), 0)[0]  # default: the first update prunes


def test_periodic_boundaries():
  sched = schedules.periodic(every=10, begin=5, end=25)
  updates = [t for t in range(40) if _at(sched, t)[0]]
  assert updates == [5, 15, 25]
  assert _at(sched, 4)[1] == 0.0 and _at(sched, 30)[1] == pytest.approx(0.9)


def test_polynomial_values_and_steps():
  sched = schedules.polynomial(begin=10, end=50, every=15, power=3, initial=0.1)
  updates = [t for t in range(80) if _at(sched, t)[0]]
  assert updates == [10, 25, 40, 50]  # the grid plus `end` itself
  assert _at(sched, 9)[1] == 0.0  # dense before begin
  assert _at(sched, 10)[1] == pytest.approx(0.1)  # s_i at begin
  p = (30 - 10) / 40
  assert _at(sched, 30)[1] == pytest.approx(0.9 + (0.1 - 0.9) * (1 - p) ** 3, rel=1e-6)
  assert _at(sched, 50)[1] == pytest.approx(0.9) and _at(sched, 1000)[1] == pytest.approx(0.9)


def test_polynomial_is_monotone_and_jittable():
  sched = schedules.polynomial(0, 100, 1)
  values = jax.jit(jax.vmap(lambda t: sched(t, 0.95)[1]))(np.arange(120))
  assert (np.diff(np.asarray(values)) >= -1e-7).all()


def test_cosine_fraction():
  f = schedules.cosine_fraction(0.3, end=100)
  assert float(f(0)) == pytest.approx(0.3) and float(f(100)) == pytest.approx(0.0, abs=1e-7)
  # f(t) = 0.3 / 2 * (1 + cos(pi t / 100)); cos(pi/4) = 0.70711 = -cos(3 pi/4), cos(pi/2) = 0
  assert float(f(25)) == pytest.approx(0.15 * 1.7071068, rel=1e-6)
  assert float(f(50)) == pytest.approx(0.15, rel=1e-6)
  assert float(f(75)) == pytest.approx(0.15 * 0.2928932, rel=1e-5)
  steps = jnp.arange(0, 151, 5)
  got = np.asarray(jax.jit(jax.vmap(f))(steps))
  t = np.minimum(np.arange(0, 151, 5), 100) / 100
  np.testing.assert_allclose(got, 0.15 * (1 + np.cos(np.pi * t)), rtol=1e-5, atol=1e-7)
  assert (np.diff(got[:21]) < 0).all() and (got[20:] == got[20]).all()  # flat after `end`


@pytest.mark.parametrize(
  "make, match",
  [
    (lambda: schedules.polynomial(10, 10, 1), "begin < end"),
    (lambda: schedules.polynomial(0, 10, 0), "every >= 1"),
    (lambda: schedules.periodic(0), "positive int"),
    (lambda: schedules.one_shot(-1), "non-negative"),
    (lambda: schedules.polynomial(0, 10, 1, initial=1.0), "initial"),
  ],
)
def test_bad_schedules(make, match):
  with pytest.raises(ValueError, match=match):
    make()


def test_schedule_must_be_callable():
  with pytest.raises(TypeError, match="callable"):
    schedules.get(5)


@pytest.mark.parametrize(
  "make, match",
  [
    (lambda: schedules.periodic(1, begin=10, end=3), r"begin=10.*end=3"),
    (lambda: schedules.periodic(-2), "positive int"),
    (lambda: schedules.periodic(True), "positive int"),
    (lambda: schedules.periodic(1.5), "positive int"),
    (lambda: schedules.one_shot(True), "non-negative int"),
    (lambda: schedules.polynomial(10, 3, 1), "begin < end"),
    (lambda: schedules.polynomial(0, 10, 1, power=0.0), "power"),
    (lambda: schedules.polynomial(0, 10, 1, power=float("nan")), "power"),
    (lambda: schedules.polynomial(0, 10, 1, initial=float("nan")), "initial"),
    (lambda: schedules.cosine_fraction(0.3, end=0), "end"),
    (lambda: schedules.cosine_fraction(1.5, end=10), "initial"),
  ],
)
def test_schedules_that_cannot_work_are_refused(make, match):
  with pytest.raises(ValueError, match=match):
    make()


def test_periodic_with_begin_equal_to_end_updates_once():
  sched = schedules.periodic(5, begin=3, end=3)
  assert [t for t in range(20) if _at(sched, t)[0]] == [3]
