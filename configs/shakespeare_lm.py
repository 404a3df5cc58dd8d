"""A small Llama-style byte-level language model on Shakespeare's plays, trained dense.

``jaxprune-train --config configs/shakespeare_lm.py --workdir runs/shakespeare_lm``. The
``"decoder_lm"`` of `jaxprune.train.models.lm` (RMSNorm, RoPE, SwiGLU) reads windows of
128 bytes of the plays (`jaxprune.data.text`; prepare them once with
``python -m jaxprune.data prepare shakespeare --download``) and predicts the next byte.
Validation and test are whole held-out plays; the summary and ``metrics.jsonl`` give their
loss in nats per byte (``*_loss``, ``*_nats_per_byte``), ``*_bits_per_byte`` and
``*_perplexity`` (see `jaxprune.train.text_task`).

Sized to reach a meaningful loss within a quarter of an hour on a 2-core CPU: its 400
steps cost about 1.5 CPU-seconds each, and it ends at about 1.75 nats (2.53 bits) per byte
on the validation plays, perplexity 5.8. The pruning benchmarks start from its final
checkpoint. For masked training, set
``--config.pruning.enabled=True`` with any pruning setting of configs/default.py (e.g.
``configs/rigl.py``'s), with the schedule in steps (``--config.pruning.schedule.unit=steps``;
an epoch of this data is 1,123 steps of 32 windows of 128 bytes).
"""

from pathlib import Path

import ml_collections

from jaxprune.train.config import load_config


def get_config() -> ml_collections.ConfigDict:
  """configs/default.py with a byte-level decoder LM on ``shakespeare``."""
  config = load_config(Path(__file__).with_name("default.py"))
  config.data.name = "shakespeare"  # Byte tokens of the plays; "text:PATH" for your own text.
  config.data.fallback = ""  # No substitute dataset for a language model.
  config.data.fallback_config = ""
  # Whole plays are held out for validation and test (shares only for "text:PATH").
  config.data.validation_fraction = 0.0
  with config.unlocked():
    config.data.test_fraction = 0.0  # Share of a "text:PATH" held out for test.
    config.data.seq_len = 128  # Bytes per window (the context the model is trained on).

  config.model.name = "decoder_lm"
  config.model.kwargs = ml_collections.ConfigDict(
    dict(
      num_layers=4,  # Pre-norm decoder blocks.
      width=192,  # d_model.
      num_heads=6,  # Head dim 32.
      mlp_width=512,  # SwiGLU hidden width (8/3 of the width, as Llama).
      max_len=128,  # Longest sequence (>= data.seq_len).
      variant="llama",  # RMSNorm, RoPE, SwiGLU, untied head: 1.87M parameters.
    )
  )

  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 3e-3  # Peak, after the warm-up.
  config.optimizer.lr_schedule = "cosine"
  config.optimizer.warmup_epochs = 0.04  # Linear warm-up, 45 steps (an epoch is 1,123 steps).
  config.optimizer.end_lr_factor = 0.1  # Cosine decay to a tenth of the peak.
  config.optimizer.weight_decay = 0.1  # Decoupled.
  config.optimizer.grad_clip_norm = 1.0

  config.train.batch_size = 32  # Windows per step (4,096 bytes).
  # 400 steps: 1.6M bytes, a third of an epoch (35,940 windows of the 4.6 MB of plays).
  config.train.num_steps = 400
  config.train.eval_batch_size = 64  # Windows per evaluation batch.
  config.train.eval_every_epochs = 0.2  # Validation (whole held-out plays) every 225 steps.
  config.train.log_every_steps = 25

  config.pruning.enabled = False  # Dense: the model the one-shot pruning benchmarks prune.
  config.checkpoint.every_steps = 100
  return config
