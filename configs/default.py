"""Default experiment: LeNet-300-100 on MNIST, gradual magnitude pruning to 90% sparsity.

Run it with ``jaxprune-train --config configs/default.py --workdir runs/default``; change
any field from the command line, e.g. ``--config.pruning.sparsity=0.95``. Variants import
this file (``load_config("default")``) and override what differs.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """The default config; every field is documented inline."""
  config = ml_collections.ConfigDict()
  config.seed = 0  # Seeds initialisation, the data order, dropout and stochastic criteria.

  config.data = ml_collections.ConfigDict()
  # "mnist", "fashion_mnist", "cifar10", "imagenet2012", any prepared TFDS image dataset, or
  # "digits" (8x8, bundled).
  config.data.name = "mnist"
  config.data.data_dir = (
    ""  # TFDS data directory; "" = $JAXPRUNE_DATA_DIR or ~/tensorflow_datasets.
  )
  # IDX files to prepare from; "" = <data_dir>/downloads/manual/<name>, or for MNIST the
  # checkout's ../shared/data/mnist (never relative to the working directory).
  config.data.source_dir = ""
  config.data.download = False  # Allow downloading the dataset if not prepared (needs network).
  # Used, with a notice, if `name` is a known dataset that is not prepared; "" = fail. An
  # unknown (e.g. misspelt) name is always an error.
  config.data.fallback = "digits"
  # On the fallback, fields configs/<this>.py sets differently from this file replace the ones
  # a config left at their default (run length, schedule, intervals); "" = keep them all.
  config.data.fallback_config = "digits"
  config.data.validation_fraction = 0.1  # Share of train held out to evaluate during training.
  config.data.validation_seed = 0  # Seed of that draw (fixed: every run validates alike).
  config.data.on_device = True  # Keep in-memory splits on device; steps gather their batch.
  config.data.prefetch = 2  # Batches put on device ahead of the step (when not on_device).
  config.data.num_workers = 0  # grain processes reading/augmenting batches (0: in-process).
  config.data.augment = ""  # "none", "cifar" or "imagenet"; "" = the dataset's own family.
  config.data.image_size = 0  # Side of the model's images (resized datasets only); 0 = default.

  config.model = ml_collections.ConfigDict()
  config.model.name = "lenet300100"  # lenet300100, lenet5, vgg_small, resnet20 or vit_small.
  config.model.kwargs = ml_collections.ConfigDict()  # Model attributes, e.g. widths for resnet20.
  # .npz of params replacing the initialisation (jaxprune.train.export.save_tree), e.g. a
  # lottery ticket's rewind point; "" = initialise from the seed.
  config.model.initial_params = ""

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"  # adam, adamw, sgd, momentum or lion (wrapped by masked()).
  config.optimizer.learning_rate = 1e-3  # Peak learning rate.
  config.optimizer.lr_schedule = "cosine"  # constant, cosine, linear (decay to the end) or step.
  config.optimizer.decay_epochs = ()  # step: epochs where the rate is multiplied by...
  config.optimizer.decay_factor = 0.1  # ...this factor.
  config.optimizer.warmup_epochs = 0.0  # Linear warm-up from 0 to the peak, in epochs.
  config.optimizer.end_lr_factor = 0.0  # Final learning rate as a fraction of the peak.
  config.optimizer.weight_decay = 0.0  # adamw/lion: decoupled; adam/sgd: added to the gradient.
  config.optimizer.momentum = 0.9  # Momentum of sgd / momentum.
  config.optimizer.nesterov = False  # Nesterov momentum for sgd / momentum.
  config.optimizer.grad_clip_norm = 0.0  # Clip gradients to this global norm (0 = off).

  config.train = ml_collections.ConfigDict()
  config.train.batch_size = 128  # Global batch size (split over devices).
  config.train.num_epochs = 20.0  # Length of the run in epochs (fractions allowed).
  config.train.num_steps = -1  # If > 0, the length in steps instead of epochs.
  # Step a fresh run starts at (e.g. k when rewound to step k): it trains steps start_step
  # to the end, the learning rate continuing from its value at start_step.
  config.train.start_step = 0
  config.train.eval_batch_size = 1000  # Batch size of the evaluations.
  # Evaluate on the validation split this often (and at the end); the test split is
  # evaluated once, at the end (during training too if validation_fraction is 0).
  config.train.eval_every_epochs = 2.0
  config.train.log_every_steps = 100  # Write training metrics and refresh the bar this often.
  config.train.label_smoothing = 0.0  # Label smoothing of the training loss.
  config.train.penalty = ""  # Loss penalty: "" (none), "kl" (variational dropout) or "l0".
  config.train.penalty_weight = 1.0  # Its multiplier (the weight per example is this / N).
  config.train.penalty_warmup_epochs = 0.0  # Epochs trained without the penalty.
  config.train.penalty_ramp_epochs = 0.0  # Then epochs of a linear ramp to the full weight.

  config.pruning = ml_collections.ConfigDict()
  config.pruning.enabled = True  # False trains dense with the plain inner optimizer.
  config.pruning.sparsity = 0.9  # Final fraction of weights removed from the pruned layers.
  config.pruning.criterion = "magnitude"  # Any name in jaxprune.criteria.names().
  config.pruning.schedule = ml_collections.ConfigDict()
  config.pruning.schedule.kind = "polynomial"  # one_shot, periodic or polynomial (gradual).
  config.pruning.schedule.unit = "epochs"  # Unit of begin / end / every: epochs or steps.
  config.pruning.schedule.begin = 1.0  # First mask update (one_shot: the only one).
  config.pruning.schedule.end = 10.0  # Last mask update, reaching the target (polynomial).
  config.pruning.schedule.every = 0.25  # Interval between mask updates.
  config.pruning.schedule.power = 3.0  # Exponent of the polynomial ramp (Zhu & Gupta: 3).
  config.pruning.schedule.initial = 0.0  # Sparsity at `begin` (polynomial).
  config.pruning.distribution = "uniform"  # uniform, erk, er, global or global_normalized.
  config.pruning.dense = ""  # Regex of parameter paths kept dense (uniform only), e.g. Dense_2/.*
  config.pruning.structure = "unstructured"  # unstructured, channels, rows, N:M, block:RxC.
  config.pruning.packed = False  # Store masks as 1 bit per weight.
  config.pruning.seed = 0  # Seed of stochastic criteria (e.g. random).
  # .npz of bool masks to start from (jaxprune.train.export.save_tree, e.g. a lottery
  # round's masks.npz): fixed with sparsity 0 (static sparse training), else the schedule
  # prunes further from them. "" = start dense.
  config.pruning.initial_masks = ""
  # Re-estimate BatchNorm statistics over this many training batches after the last mask
  # update (one-shot pruning): -1 = 20 for models with BatchNorm, none otherwise; 0 = off.
  config.pruning.recalibrate_bn = -1
  config.pruning.scoring_temperature = 1.0  # Logit temperature of the loss criteria score with.
  # Steps where the schedule keeps the masks use a second compiled step without the
  # mask-update branch (identical results, faster; costs one more compilation).
  config.pruning.frozen_step = True

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.enabled = True  # Save and resume from <workdir>/checkpoints.
  config.checkpoint.every_steps = 1000  # Save every this many steps (and at the end).
  config.checkpoint.keep = 2  # Keep the last this many checkpoints.
  config.checkpoint.async_save = True  # Write checkpoints in the background.

  config.sharding = ml_collections.ConfigDict()
  config.sharding.fsdp = False  # Shard params, masks and moments over devices (else replicate).
  config.sharding.fsdp_min_size = 16384  # Leaves smaller than this stay replicated under fsdp.

  config.report = ml_collections.ConfigDict()
  config.report.plots = True  # Write training-curve and per-layer sparsity PNGs.
  config.report.tensorboard = True  # Write TensorBoard events to <workdir>/tensorboard.
  config.report.progress = True  # Show a tqdm progress bar.
  return config
