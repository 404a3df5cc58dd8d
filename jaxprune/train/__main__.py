"""``python -m jaxprune.train --config configs/default.py --workdir DIR [--config.a.b=value]``."""

from jaxprune.train.main import main

if __name__ == "__main__":
  main()
