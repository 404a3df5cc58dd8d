"""``python -m jaxprune.oneshot CHECKPOINT --out DIR [...]``: see `jaxprune.oneshot.cli`."""

from jaxprune.oneshot.cli import main

if __name__ == "__main__":
  main()
